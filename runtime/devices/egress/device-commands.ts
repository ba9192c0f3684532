/**
 * Twin → device commands: what `Twin.sendToDevice` does on a node. A command is a request on
 * `doppel.dev.<type>.<id>.cmd` with `{ command, args, id }` (JSON). A device answers in one of two
 * ways, whichever it can:
 *
 * - NATS devices reply to the request: `{ result }` or `{ error: { code, message } }` (JSON, or
 *   protobuf `CommandReply` when the reply says `Content-Type: application/x-protobuf`);
 * - MQTT devices (MQTT 3.1.1 has no reply topic) publish `{ id, result }` or `{ id, error }` (JSON)
 *   on their own `doppel.dev.<type>.<id>.cmd-result` subject (MQTT topic
 *   `doppel/dev/<type>/<id>/cmd-result`), `id` being the command's. Every node hears every result
 *   and keeps those of its own pending commands; a result on another twin's subject, or for an id
 *   no longer pending (answered, timed out), is ignored.
 *
 * Failures are typed so they reach a gRPC caller clearly:
 *
 * - nobody listens on the subject → `Unavailable`: "device thermostat/t1 is offline" (details
 *   `reason: "offline"`);
 * - no answer in time → `DeadlineExceeded` (details `reason: "no-answer"`);
 * - the node is stopping (the command is not sent, or one under way will not hear its answer) →
 *   `Unavailable` (details `reason: "stopping"`);
 * - the node cannot send it (its connection is closed or draining, or down when NATS answers no
 *   responders) → `Unavailable` (details `reason: "not-sent"`);
 * - an answer that does not decode → `Unavailable` (the device is broken, the twin is not);
 * - the device's own error → that error's code and message (unknown codes become `INTERNAL`).
 *
 * The four reasons are `UnreachableReason`s: a queued command (`sendToDevice` `queueFor`) stays
 * queued after them, since none of them is the device's answer.
 */

import { randomUUID } from "node:crypto";
import type { Subscription } from "../../../cluster/transport/transport.ts";
import { type Transport, TransportError } from "../../../cluster/transport/transport.ts";
import { DeadlineExceeded, DoppelError, Unavailable, type WireError } from "../../core/errors.ts";
import { refKey, type TwinRef } from "../../core/ids.ts";
import { isJsonObject, type Json, type JsonLimits, type JsonObject } from "../../core/json.ts";
import type { DeviceSender } from "../../engine/engine.ts";
import { isNodeStopping, UnreachableReason } from "../../engine/queued-commands.ts";
import { decodeCommandReply, encodingOf } from "../payload-codec.ts";
import {
  DeviceChannel,
  decodeJsonPayload,
  deviceSubject,
  deviceWildcard,
  encodeJson,
  parseDeviceSubject,
} from "../protocol.ts";

/** Counters of device commands sent by this node. */
export interface DeviceCommandStats {
  sent: number;
  answered: number;
  offline: number;
  timedOut: number;
  /** Attempts that did not get through: the node's connection was closed or gone, or the node stopped. */
  notSent: number;
  failed: number;
}

/** A fresh set of {@link DeviceCommandStats}. */
export function deviceCommandStats(): DeviceCommandStats {
  return { sent: 0, answered: 0, offline: 0, timedOut: 0, notSent: 0, failed: 0 };
}

/** The failure of a command the stopping node will not send, or whose answer it will not hear. */
function stopping(device: string, why: string): Unavailable {
  return new Unavailable(`device ${device}: ${why}`, { device, reason: UnreachableReason.Stopping });
}

/** A command waiting for its device's answer on the `cmd-result` subject. */
interface Pending {
  readonly twin: string;
  resolve(body: JsonObject): void;
  reject(error: DoppelError): void;
}

/** Sends commands to devices and collects their answers (see the module comment). */
export class DeviceCommands {
  readonly #pending = new Map<string, Pending>();
  readonly #results: Subscription;
  #stopped = false;

  constructor(
    private readonly transport: Transport,
    private readonly limits: JsonLimits,
    readonly stats: DeviceCommandStats = deviceCommandStats(),
  ) {
    this.#results = transport.subscribe(deviceWildcard(DeviceChannel.CommandResult), (message) =>
      this.#onResult(message.subject, message.data),
    );
  }

  /** The {@link DeviceSender} a node's engine uses. */
  readonly send: DeviceSender = (ref, command, args, timeoutMs, id) =>
    this.#send(ref, command, args, timeoutMs, id ?? randomUUID());

  /**
   * Stops taking results: commands still waiting, and any sent from now on, fail with
   * `Unavailable` (`reason: "stopping"`).
   */
  stop(): void {
    this.#stopped = true;
    this.#results.unsubscribe();
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(stopping(pending.twin, "the node is stopping; the command's outcome is unknown"));
    }
  }

  async #send(ref: TwinRef, command: string, args: JsonObject, timeoutMs: number, id: string): Promise<Json> {
    const subject = deviceSubject(ref, DeviceChannel.Command);
    const device = `device ${refKey(ref)}`;
    this.stats.sent++;
    if (this.#stopped) {
      this.stats.notSent++;
      throw stopping(refKey(ref), `command '${command}' not sent: the node is stopping`);
    }
    // Whichever comes first: the reply to the request (NATS devices), or an answer published on
    // the device's cmd-result subject (devices that cannot reply), resolved by #onResult.
    const published = new Promise<JsonObject>((resolve, reject) => {
      this.#pending.set(id, { twin: refKey(ref), resolve, reject });
    });
    let body: JsonObject;
    try {
      const replied = this.transport
        .request(subject, encodeJson({ command, args, id }), { timeoutMs })
        .then((reply) => {
          try {
            return decodeCommandReply(reply.data, encodingOf(reply.headers), this.limits);
          } catch (error) {
            throw new Unavailable(
              `${device} answered command '${command}' with a malformed reply: ${(error as Error).message}`,
            );
          }
        });
      body = await Promise.race([replied, published]);
    } catch (error) {
      if (this.#stopped || isNodeStopping(error)) {
        // stop() settled it, or the connection closed under it while the node stops.
        this.stats.notSent++;
        throw isNodeStopping(error)
          ? error
          : stopping(refKey(ref), `the node is stopping; the outcome of command '${command}' is unknown`);
      }
      const closed = error instanceof TransportError && error.failure === "closed";
      // No responders while the node's own connection is down says nothing about the device.
      const down =
        error instanceof TransportError &&
        error.failure === "no-responders" &&
        this.transport.connected === false;
      if (closed || down) {
        this.stats.notSent++;
        throw new Unavailable(`${device}: command '${command}' not sent: ${(error as Error).message}`, {
          device: refKey(ref),
          reason: UnreachableReason.NotSent,
        });
      }
      if (error instanceof TransportError && error.failure === "no-responders") {
        this.stats.offline++;
        throw new Unavailable(`${device} is offline: nothing listens on ${subject}`, {
          device: refKey(ref),
          reason: UnreachableReason.Offline,
        });
      }
      if (error instanceof TransportError && error.failure === "timeout") {
        this.stats.timedOut++;
        throw new DeadlineExceeded(`${device} did not answer command '${command}' within ${timeoutMs} ms`, {
          device: refKey(ref),
          reason: UnreachableReason.NoAnswer,
        });
      }
      this.stats.failed++;
      if (error instanceof DoppelError) throw error;
      throw new Unavailable(`${device}: command '${command}' not sent: ${(error as Error).message}`);
    } finally {
      this.#pending.delete(id);
    }
    const wireError = body["error"];
    if (isJsonObject(wireError)) {
      this.stats.failed++;
      throw DoppelError.fromWire({
        code: String(wireError["code"] ?? "INTERNAL"),
        message: `${device}: ${String(wireError["message"] ?? "command failed")}`,
      } as WireError);
    }
    if (!("result" in body)) {
      this.stats.failed++;
      throw new Unavailable(`${device} answered command '${command}' without a result`);
    }
    this.stats.answered++;
    return body["result"] ?? null;
  }

  /** A device's answer on its `cmd-result` subject: settles the pending command it names, if ours. */
  #onResult(subject: string, data: Uint8Array): void {
    let twin: string;
    let body: JsonObject;
    try {
      twin = refKey(parseDeviceSubject(subject).ref);
      body = decodeJsonPayload(data, "command result", this.limits);
    } catch {
      return; // not an answer any node could match to a command
    }
    const id = body["id"];
    const pending = typeof id === "string" ? this.#pending.get(id) : undefined;
    // Only the device the command went to may answer it (its own subject).
    if (!pending || pending.twin !== twin) return;
    if (!("result" in body) && !isJsonObject(body["error"])) {
      pending.reject(
        new Unavailable(`device ${twin} answered a command on ${subject} with neither a result nor an error`),
      );
      return;
    }
    pending.resolve(body);
  }
}
