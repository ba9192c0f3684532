/**
 * `DeviceClient`: the device side of the protocol, for devices and gateways written in
 * TypeScript (and for the simulator). It reports state and telemetry with message ids (so a
 * re-sent report is applied once), receives desired state and commands, and re-syncs desired
 * state on demand and after every reconnect. Each report resolves once the report is durably
 * accepted: persisted by the node (in-process), or stored in Doppel's JetStream stream (NATS).
 *
 * ```ts
 * const device = await DeviceClient.connect({
 *   servers: "nats://127.0.0.1:4222", credentials: { user: "t1", pass: "secret" },
 *   type: "thermostat", id: "t1",
 * });
 * device.onDesired(({ desired }) => heater.set(desired.heating));
 * device.onCommand(async (command, args) => ({ rebooted: true }));
 * device.onError((error) => console.warn(error.message));   // input the node refused
 * await device.report({ temperature: 19.5 });
 * const { desired } = await device.sync();
 * await device.close();
 * ```
 *
 * **Offline buffer.** While the connection is down, reports and telemetry wait in a bounded
 * buffer (default 1000 messages) and are sent, in order and with their original message ids,
 * once it is back — after a re-sync of desired state. When the buffer is full, the policy decides:
 * `drop-oldest` (default: the oldest buffered message is dropped — its promise rejects with
 * `ResourceExhausted` — so the freshest state gets through) or `reject-new` (the new message is
 * refused at once with `ResourceExhausted`). `stats.dropped` counts both. A send that was in
 * flight when the connection dropped is buffered again (its message id makes a re-send safe).
 */
import { randomBytes } from "node:crypto";
import { type NatsCredentials, type NatsTlsFiles, NatsTransport } from "../../../cluster/transport/nats.ts";
import {
  type DurableAck,
  type Headers,
  type Subscription,
  type Transport,
  TransportError,
  type TransportMessage,
} from "../../../cluster/transport/transport.ts";
import {
  DoppelError,
  InvalidArgument,
  ResourceExhausted,
  Unavailable,
  type WireError,
} from "../../core/errors.ts";
import { type TwinRef, twinRef } from "../../core/ids.ts";
import { isJsonObject, type Json, type JsonObject } from "../../core/json.ts";
import { present } from "../../core/present.ts";
import {
  decodeDeviceState,
  type Encoding,
  encodeProtobuf,
  encodingHeaders,
  encodingOf,
} from "../payload-codec.ts";
import {
  AT_HEADER,
  type DesiredPush,
  DeviceChannel,
  type DeviceCommand,
  deviceInboxPrefix,
  deviceSubject,
  encodeJson,
  errorReply,
  type ReportReply,
  SEQ_HEADER,
  type SyncReply,
  transportFailure,
} from "../protocol.ts";

/** What to do with a new message when the offline buffer is full. */
export type BufferPolicy = "drop-oldest" | "reject-new";

export interface DeviceClientOptions {
  readonly transport: Transport;
  readonly type: string;
  readonly id: string;
  /** How long to wait for a report to be acknowledged. */
  readonly ackTimeoutMs?: number;
  /** Payload encoding of reports, telemetry and sync (default JSON). */
  readonly encoding?: Encoding;
  /** The offline buffer (see the module comment). */
  readonly offlineBuffer?: { readonly maxMessages?: number; readonly whenFull?: BufferPolicy };
  /** Close the transport when the client is closed (set by {@link DeviceClient.connect}). */
  readonly ownsTransport?: boolean;
  /**
   * Stamp every report with a per-device sequence number (`Doppel-Seq`, default true), so the twin
   * applies each report at most once and never after a later one, however it is redelivered or
   * re-sent. The first number is `firstSeq`; the default, the clock in microseconds when the client
   * is made, keeps a restarted device above its earlier reports unless its clock went back.
   */
  readonly stampReports?: boolean;
  readonly firstSeq?: number;
  /**
   * Also stamp reports with the device's clock (`Doppel-At`, default false): a reported field the
   * twin holds with a newer time is then not overwritten (for twins fed by several publishers).
   */
  readonly stampTime?: boolean;
}

/** Options of {@link DeviceClient.connect}: a device's own NATS connection. */
export interface DeviceConnectOptions extends Omit<DeviceClientOptions, "transport" | "ownsTransport"> {
  /** NATS server URL(s). */
  readonly servers: string | readonly string[];
  /** user/password, token, nkey seed or file, or a .creds file. */
  readonly credentials?: NatsCredentials;
  /** TLS (`tls://` servers): PEM files of the CA to trust and, when the server asks, a client certificate. */
  readonly tls?: NatsTlsFiles;
  /** Keep retrying the first connection (default true: a device may start before its server). */
  readonly waitOnFirstConnect?: boolean;
}

/** Counters of one client. */
export interface DeviceClientStats {
  /** Reports and telemetry handed to the transport. */
  sent: number;
  /** ... and acknowledged. */
  acked: number;
  /** Waiting in the offline buffer now. */
  buffered: number;
  /** Dropped or refused because the offline buffer was full. */
  dropped: number;
  /** Re-syncs of desired state after a reconnect. */
  resyncs: number;
  /** Errors the node sent on this device's `errors` subject. */
  refused: number;
}

interface Outgoing {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Headers | undefined;
  readonly messageId: string;
  readonly what: string;
  readonly resolve: (ack: DurableAck) => void;
  readonly reject: (error: DoppelError) => void;
}

export interface ReportAck {
  /** The twin's version after the report, when the acknowledging party knows it. */
  readonly version: number | undefined;
  readonly duplicate: boolean;
  /** The report's sequence number, when it was stamped. */
  readonly seq?: number;
}

/**
 * Handles a command sent by the twin; its return value is the command's result. `context.id` is
 * the command's id: a queued command (`sendToDevice` `queueFor`) may come again with the same id
 * when its answer was lost, so a device whose commands must not run twice remembers the ids it ran.
 */
export type CommandHandler = (
  command: string,
  args: JsonObject,
  context: { readonly id: string },
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
function withHeaders(
  base: Headers | undefined,
  more: ReadonlyMap<string, string> | undefined,
): Headers | undefined {
  if (!more || more.size === 0) return base;
  return new Map([...(base ?? []), ...more]);
}

function readAck(ack: DurableAck): ReportAck {
  const reply = decode(ack.data) as ReportReply | undefined;
  if (reply && "error" in reply) throw DoppelError.fromWire(reply.error);
  const ok = reply && "ok" in reply ? reply : undefined;
  return { version: ok?.version, duplicate: ack.duplicate || (ok?.duplicate ?? false) };
}

export class DeviceClient {
  readonly ref: TwinRef;
  readonly stats: DeviceClientStats = { sent: 0, acked: 0, buffered: 0, dropped: 0, resyncs: 0, refused: 0 };
  readonly #transport: Transport;
  readonly #ackTimeoutMs: number;
  readonly #encoding: Encoding;
  readonly #maxBuffered: number;
  readonly #whenFull: BufferPolicy;
  readonly #ownsTransport: boolean;
  readonly #idPrefix = randomBytes(6).toString("base64url");
  #sequence = 0;
  #outSeq = 0;
  #reportSeq: number | undefined;
  readonly #stampTime: boolean;
  readonly #subs: Subscription[] = [];
  readonly #buffer: Outgoing[] = [];
  readonly #desiredListeners = new Set<(push: DesiredPush) => void>();
  readonly #connectionListeners = new Set<(state: "connected" | "disconnected") => void>();
  /** Grows on every disconnect: a send that fails across one is buffered again. */
  #disconnects = 0;
  #online: boolean;
  #closed = false;
  #stopWatching: (() => void) | undefined;

  constructor(options: DeviceClientOptions) {
    this.ref = twinRef(options.type, options.id);
    this.#transport = options.transport;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.#encoding = options.encoding ?? "json";
    this.#maxBuffered = Math.max(1, options.offlineBuffer?.maxMessages ?? 1000);
    this.#whenFull = options.offlineBuffer?.whenFull ?? "drop-oldest";
    this.#ownsTransport = options.ownsTransport ?? false;
    this.#stampTime = options.stampTime ?? false;
    if (options.stampReports ?? true) {
      const first = options.firstSeq ?? Date.now() * 1000;
      if (!Number.isSafeInteger(first) || first < 1)
        throw new InvalidArgument("firstSeq must be a positive safe integer");
      this.#reportSeq = first;
    }
    this.#online = this.#transport.connected ?? true;
    this.#stopWatching = this.#transport.onConnectionChange?.((state) => this.#onConnection(state));
  }

  /**
   * Connects a device to NATS with its own connection (reconnecting forever) and returns its
   * client; {@link close} closes the connection. Fails with `Unavailable` if the server cannot be
   * reached and `waitOnFirstConnect` is false.
   */
  static async connect(options: DeviceConnectOptions): Promise<DeviceClient> {
    let transport: NatsTransport;
    try {
      transport = await NatsTransport.connect({
        servers: options.servers,
        ...present({ credentials: options.credentials, tls: options.tls }),
        name: `doppel-device-${options.type}-${options.id}`,
        inboxPrefix: deviceInboxPrefix(twinRef(options.type, options.id)),
        waitOnFirstConnect: options.waitOnFirstConnect ?? true,
      });
    } catch (error) {
      throw new Unavailable((error as Error).message);
    }
    return new DeviceClient({ ...options, transport, ownsTransport: true });
  }

  /** False while the connection is down (reports then wait in the offline buffer). */
  get connected(): boolean {
    return this.#online;
  }

  /** Calls `listener` when the connection drops and when it is back (after the re-sync). */
  onConnection(listener: (state: "connected" | "disconnected") => void): () => void {
    this.#connectionListeners.add(listener);
    return () => this.#connectionListeners.delete(listener);
  }

  #onConnection(state: "connected" | "disconnected"): void {
    if (this.#closed) return;
    if (state === "disconnected") {
      this.#online = false;
      this.#disconnects++;
      this.#emitConnection(state);
      return;
    }
    this.#online = true;
    void this.#resync().then(() => {
      this.#flush();
      this.#emitConnection("connected");
    });
  }

  #emitConnection(state: "connected" | "disconnected"): void {
    for (const listener of this.#connectionListeners) {
      try {
        listener(state);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** After a reconnect: fetch desired state (retrying while connected) and hand it to the listeners. */
  async #resync(): Promise<void> {
    for (let attempt = 0; this.#online && !this.#closed && attempt < 10; attempt++) {
      try {
        const state = await this.sync();
        this.stats.resyncs++;
        const push: DesiredPush = { version: state.version, desired: state.desired, delta: state.delta };
        for (const listener of this.#desiredListeners) listener(push);
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)).unref());
      }
    }
  }

  /** A fresh message id, unique to this client. */
  nextMessageId(): string {
    return `${this.ref.id}-${this.#idPrefix}-${(this.#sequence++).toString(36)}`;
  }

  /**
   * The next report sequence number (stamped clients), taken: pass it as `seq` to `report`, and
   * again with the same `messageId` to re-send that report. Undefined when reports are not stamped.
   */
  nextSeq(): number | undefined {
    if (this.#reportSeq === undefined) return undefined;
    return this.#reportSeq++;
  }

  /**
   * Reports a reported-state patch (JSON merge patch) and waits for it to be durably accepted.
   * Re-sending with the same `messageId` (and, when reports are stamped, the same `seq`; see
   * {@link nextSeq}) never applies the report twice; a stamped report is never applied after a
   * later one. The client's own retries keep both.
   */
  async report(patch: JsonObject, options: { messageId?: string; seq?: number } = {}): Promise<ReportAck> {
    if (!isJsonObject(patch)) throw new InvalidArgument("report(): the patch must be a JSON object");
    if (options.seq !== undefined && (!Number.isSafeInteger(options.seq) || options.seq < 1))
      throw new InvalidArgument("report(): seq must be a positive safe integer");
    const data = this.#encoding === "protobuf" ? encodeProtobuf("Reported", patch) : encodeJson(patch);
    const seq = options.seq ?? this.nextSeq();
    const stamp = new Map<string, string>();
    if (seq !== undefined) stamp.set(SEQ_HEADER, String(seq));
    if (this.#stampTime) stamp.set(AT_HEADER, String(Date.now()));
    const ack = await this.#send(
      DeviceChannel.Reported,
      data,
      options.messageId ?? this.nextMessageId(),
      `report from ${this.ref.type}/${this.ref.id}`,
      stamp,
    );
    const read = readAck(ack);
    return seq === undefined ? read : { ...read, seq };
  }

  /** Sends numeric telemetry samples (kept apart from state events). */
  async telemetry(metrics: Readonly<Record<string, number>>, at: number = Date.now()): Promise<void> {
    const body = { at, metrics };
    const data = this.#encoding === "protobuf" ? encodeProtobuf("Telemetry", body) : encodeJson(body);
    const ack = await this.#send(
      DeviceChannel.Telemetry,
      data,
      this.nextMessageId(),
      `telemetry from ${this.ref.type}/${this.ref.id}`,
    );
    readAck(ack);
  }

  /** Sends now, or buffers while offline; resolves with the durable ack. */
  #send(
    channel: DeviceChannel,
    data: Uint8Array,
    messageId: string,
    what: string,
    stamp?: ReadonlyMap<string, string>,
  ): Promise<DurableAck> {
    if (this.#closed) return Promise.reject(new Unavailable(`${what}: the device client is closed`));
    return new Promise<DurableAck>((resolve, reject) => {
      const out: Outgoing = {
        seq: this.#outSeq++,
        subject: deviceSubject(this.ref, channel),
        data,
        headers: withHeaders(encodingHeaders(this.#encoding), stamp),
        messageId,
        what,
        resolve,
        reject,
      };
      if (this.#online && this.#buffer.length === 0) this.#publish(out);
      else this.#enqueue(out);
    });
  }

  #enqueue(out: Outgoing): void {
    if (this.#buffer.length >= this.#maxBuffered) {
      this.stats.dropped++;
      const full = `offline buffer full (${this.#maxBuffered} messages, policy ${this.#whenFull})`;
      if (this.#whenFull === "reject-new") {
        out.reject(new ResourceExhausted(`${out.what}: ${full}: refused`));
        return;
      }
      this.#buffer
        .shift()
        ?.reject(new ResourceExhausted(`${out.what}: ${full}: the oldest message was dropped`));
    }
    // Keep the buffer in send order (a failed in-flight send is put back where it belongs).
    let at = this.#buffer.length;
    while (at > 0 && (this.#buffer[at - 1]?.seq ?? 0) > out.seq) at--;
    this.#buffer.splice(at, 0, out);
    this.stats.buffered = this.#buffer.length;
  }

  #flush(): void {
    // Pipelined on one connection: the server receives them in order.
    while (this.#online && !this.#closed && this.#buffer.length > 0) this.#publish(this.#buffer.shift()!);
    this.stats.buffered = this.#buffer.length;
  }

  #publish(out: Outgoing): void {
    const generation = this.#disconnects;
    this.stats.sent++;
    this.#transport
      .publishDurable(out.subject, out.data, {
        messageId: out.messageId,
        timeoutMs: this.#ackTimeoutMs,
        ...(out.headers ? { headers: out.headers } : {}),
      })
      .then(
        (ack) => {
          this.stats.acked++;
          out.resolve(ack);
        },
        (error: unknown) => {
          const transient =
            error instanceof TransportError && (error.failure === "timeout" || error.failure === "closed");
          if (transient && !this.#closed && (generation !== this.#disconnects || !this.#online)) {
            // The connection dropped under it: send again (same message id) once it is back.
            this.#enqueue(out);
            if (this.#online) this.#flush();
            return;
          }
          out.reject(transportFailure(error, out.what));
        },
      );
  }

  /** Fetches the twin's current desired state and version (done automatically after a reconnect). */
  async sync(): Promise<SyncReply> {
    let message: TransportMessage;
    const headers = encodingHeaders(this.#encoding);
    try {
      message = await this.#transport.request(deviceSubject(this.ref, DeviceChannel.Sync), new Uint8Array(), {
        timeoutMs: this.#ackTimeoutMs,
        ...(headers ? { headers } : {}),
      });
    } catch (error) {
      throw transportFailure(error, `sync of ${this.ref.type}/${this.ref.id}`);
    }
    if (encodingOf(message.headers) === "protobuf") {
      try {
        return decodeDeviceState(message.data, { maxBytes: 16 * 1024 * 1024, maxDepth: 64 });
      } catch {
        const error = decode(message.data);
        throw new Unavailable(
          `sync: malformed reply${isJsonObject(error) ? `: ${JSON.stringify(error)}` : ""}`,
        );
      }
    }
    const reply = decode(message.data);
    if (!isJsonObject(reply)) throw new Unavailable("sync: malformed reply");
    if (isJsonObject(reply["error"])) throw DoppelError.fromWire(reply["error"] as never);
    return reply as unknown as SyncReply;
  }

  /**
   * Calls `listener` whenever the twin changes desired state, and with the current desired state
   * after every reconnect. Returns the unsubscribe.
   */
  onDesired(listener: (push: DesiredPush) => void): () => void {
    const sub = this.#transport.subscribe(deviceSubject(this.ref, DeviceChannel.Desired), (message) => {
      const push = decode(message.data);
      if (isJsonObject(push) && isJsonObject(push["desired"])) listener(push as unknown as DesiredPush);
    });
    this.#subs.push(sub);
    this.#desiredListeners.add(listener);
    return () => {
      sub.unsubscribe();
      this.#desiredListeners.delete(listener);
    };
  }

  /**
   * Calls `listener` with each error the node sends on this device's `errors` subject: input it
   * refused (bad payload, failed schema, oversized). On NATS a report's ack only means "stored";
   * this is where a refusal arrives. Returns the unsubscribe.
   */
  onError(listener: (error: DoppelError, subject: string | undefined) => void): () => void {
    const sub = this.#transport.subscribe(deviceSubject(this.ref, DeviceChannel.Errors), (message) => {
      const body = decode(message.data);
      if (!isJsonObject(body) || typeof body["code"] !== "string") return;
      this.stats.refused++;
      const subject = typeof body["subject"] === "string" ? body["subject"] : undefined;
      listener(DoppelError.fromWire(body as unknown as WireError), subject);
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
          const result = await handler(command.command, isJsonObject(command.args) ? command.args : {}, {
            id: typeof command.id === "string" ? command.id : "",
          });
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

  /**
   * Stops listening for desired state and commands; buffered messages are refused with
   * `Unavailable`. The transport stays open unless the client made it ({@link connect}).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching?.();
    for (const sub of this.#subs.splice(0)) sub.unsubscribe();
    this.#desiredListeners.clear();
    for (const out of this.#buffer.splice(0))
      out.reject(new Unavailable(`${out.what}: the device client closed`));
    this.stats.buffered = 0;
    if (this.#ownsTransport) await this.#transport.close();
  }
}
