/**
 * `DeviceClient`: the device side of the protocol, for devices and gateways written in
 * TypeScript (and for the simulator). It reports state and telemetry with message ids (so a
 * re-sent report is applied once), receives desired state and commands, and re-syncs desired
 * state on demand. Each report resolves once the report is durably accepted.
 *
 * ```ts
 * const device = new DeviceClient({ transport, type: "thermostat", id: "t1" });
 * device.onDesired(({ desired }) => heater.set(desired.heating));
 * device.onCommand(async (command, args) => ({ rebooted: true }));
 * await device.report({ temperature: 19.5 });
 * const { desired } = await device.sync();
 * ```
 */
import { randomBytes } from "node:crypto";
import {
  type DurableAck,
  type Subscription,
  type Transport,
  TransportError,
  type TransportMessage,
} from "../../cluster/transport/transport.ts";
import { DeadlineExceeded, DoppelError, InvalidArgument, Unavailable } from "../api/errors.ts";
import { type TwinRef, twinRef } from "../api/ids.ts";
import { isJsonObject, type Json, type JsonObject } from "../api/json.ts";
import {
  type DesiredPush,
  DeviceChannel,
  type DeviceCommand,
  deviceSubject,
  encodeJson,
  errorReply,
  type ReportReply,
  type SyncReply,
} from "../ingress/device-protocol.ts";

export interface DeviceClientOptions {
  readonly transport: Transport;
  readonly type: string;
  readonly id: string;
  /** How long to wait for a report to be acknowledged. */
  readonly ackTimeoutMs?: number;
}

export interface ReportAck {
  /** The twin's version after the report, when the acknowledging party knows it. */
  readonly version: number | undefined;
  readonly duplicate: boolean;
}

/** Handles a command sent by the twin; its return value is the command's result. */
export type CommandHandler = (
  command: string,
  args: JsonObject,
) => Json | undefined | Promise<Json | undefined>;

const decoder = new TextDecoder();

function decode(data: Uint8Array | undefined): unknown {
  if (!data || data.byteLength === 0) return undefined;
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}

/** Reads a durable ack: throws the node's error reply, else returns the reply (if the acker sent one). */
function readAck(ack: DurableAck): ReportAck {
  const reply = decode(ack.data) as ReportReply | undefined;
  if (reply && "error" in reply) throw DoppelError.fromWire(reply.error);
  const ok = reply && "ok" in reply ? reply : undefined;
  return { version: ok?.version, duplicate: ack.duplicate || (ok?.duplicate ?? false) };
}

function fromTransport(error: unknown, what: string): DoppelError {
  if (error instanceof TransportError) {
    if (error.failure === "timeout") return new DeadlineExceeded(`${what}: no acknowledgement in time`);
    if (error.failure === "no-responders") return new Unavailable(`${what}: no Doppel node is listening`);
    return new Unavailable(`${what}: ${error.message}`);
  }
  return DoppelError.from(error);
}

export class DeviceClient {
  readonly ref: TwinRef;
  readonly #transport: Transport;
  readonly #ackTimeoutMs: number;
  readonly #idPrefix = randomBytes(6).toString("base64url");
  #sequence = 0;
  readonly #subs: Subscription[] = [];

  constructor(options: DeviceClientOptions) {
    this.ref = twinRef(options.type, options.id);
    this.#transport = options.transport;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
  }

  /** A fresh message id, unique to this client. */
  nextMessageId(): string {
    return `${this.ref.id}-${this.#idPrefix}-${(this.#sequence++).toString(36)}`;
  }

  /**
   * Reports a reported-state patch (JSON merge patch) and waits for it to be durably accepted.
   * Re-sending with the same `messageId` never applies the report twice.
   */
  async report(patch: JsonObject, options: { messageId?: string } = {}): Promise<ReportAck> {
    if (!isJsonObject(patch)) throw new InvalidArgument("report(): the patch must be a JSON object");
    const messageId = options.messageId ?? this.nextMessageId();
    const subject = deviceSubject(this.ref, DeviceChannel.Reported);
    let ack: DurableAck;
    try {
      ack = await this.#transport.publishDurable(subject, encodeJson(patch), {
        messageId,
        timeoutMs: this.#ackTimeoutMs,
      });
    } catch (error) {
      throw fromTransport(error, `report from ${this.ref.type}/${this.ref.id}`);
    }
    return readAck(ack);
  }

  /** Sends numeric telemetry samples (kept apart from state events). */
  async telemetry(metrics: Readonly<Record<string, number>>, at: number = Date.now()): Promise<void> {
    const subject = deviceSubject(this.ref, DeviceChannel.Telemetry);
    let ack: DurableAck;
    try {
      ack = await this.#transport.publishDurable(subject, encodeJson({ at, metrics }), {
        messageId: this.nextMessageId(),
        timeoutMs: this.#ackTimeoutMs,
      });
    } catch (error) {
      throw fromTransport(error, `telemetry from ${this.ref.type}/${this.ref.id}`);
    }
    readAck(ack);
  }

  /** Fetches the twin's current desired state and version (call it after (re)connecting). */
  async sync(): Promise<SyncReply> {
    let message: TransportMessage;
    try {
      message = await this.#transport.request(deviceSubject(this.ref, DeviceChannel.Sync), new Uint8Array(), {
        timeoutMs: this.#ackTimeoutMs,
      });
    } catch (error) {
      throw fromTransport(error, `sync of ${this.ref.type}/${this.ref.id}`);
    }
    const reply = decode(message.data);
    if (!isJsonObject(reply)) throw new Unavailable("sync: malformed reply");
    if (isJsonObject(reply["error"])) throw DoppelError.fromWire(reply["error"] as never);
    return reply as unknown as SyncReply;
  }

  /** Calls `listener` whenever the twin changes desired state. Returns the unsubscribe. */
  onDesired(listener: (push: DesiredPush) => void): () => void {
    const sub = this.#transport.subscribe(deviceSubject(this.ref, DeviceChannel.Desired), (message) => {
      const push = decode(message.data);
      if (isJsonObject(push) && isJsonObject(push["desired"])) listener(push as unknown as DesiredPush);
    });
    this.#subs.push(sub);
    return () => sub.unsubscribe();
  }

  /** Answers commands the twin sends to this device with `handler`'s result (or its error). */
  onCommand(handler: CommandHandler): () => void {
    const sub = this.#transport.subscribe(deviceSubject(this.ref, DeviceChannel.Command), (message) => {
      void (async () => {
        let reply: object;
        try {
          const body = decode(message.data);
          if (!isJsonObject(body) || typeof body["command"] !== "string") {
            throw new InvalidArgument("command message must be { command, args }");
          }
          const command = body as unknown as DeviceCommand;
          const result = await handler(command.command, isJsonObject(command.args) ? command.args : {});
          reply = { result: result ?? null };
        } catch (error) {
          reply = errorReply(error);
        }
        this.#transport.respond(message, encodeJson(reply));
      })();
    });
    this.#subs.push(sub);
    return () => sub.unsubscribe();
  }

  /** Stops listening for desired state and commands (the transport stays open). */
  close(): void {
    for (const sub of this.#subs.splice(0)) sub.unsubscribe();
  }
}
