/**
 * Twin → device commands: what `Twin.sendToDevice` does on a node. A command is a request on
 * `doppel.dev.<type>.<id>.cmd` with `{ command, args }` (JSON); the device answers `{ result }` or
 * `{ error: { code, message } }` (JSON, or protobuf `CommandReply` when its reply says
 * `Content-Type: application/x-protobuf`). Failures are typed so they reach a gRPC caller clearly:
 *
 * - nobody listens on the subject → `Unavailable`: "device thermostat/t1 is offline";
 * - no answer in time → `DeadlineExceeded`;
 * - an answer that does not decode → `Unavailable` (the device is broken, the twin is not);
 * - the device's own error → that error's code and message (unknown codes become `INTERNAL`).
 */
import { type Transport, TransportError } from "../../cluster/transport/transport.ts";
import { DeadlineExceeded, DoppelError, Unavailable, type WireError } from "../api/errors.ts";
import { refKey, type TwinRef } from "../api/ids.ts";
import { isJsonObject, type Json, type JsonLimits, type JsonObject } from "../api/json.ts";
import type { DeviceSender } from "../node/engine.ts";
import { DeviceChannel, deviceSubject, encodeJson } from "./device-protocol.ts";
import { decodeCommandReply, encodingOf } from "./payload-codec.ts";

/** Counters of device commands sent by this node. */
export interface DeviceCommandStats {
  sent: number;
  answered: number;
  offline: number;
  timedOut: number;
  failed: number;
}

/** A {@link DeviceSender} over `transport`; `stats` counts outcomes. */
export function deviceCommandSender(
  transport: Transport,
  limits: JsonLimits,
  stats: DeviceCommandStats = { sent: 0, answered: 0, offline: 0, timedOut: 0, failed: 0 },
): DeviceSender {
  return async (ref: TwinRef, command: string, args: JsonObject, timeoutMs: number): Promise<Json> => {
    const subject = deviceSubject(ref, DeviceChannel.Command);
    const device = `device ${refKey(ref)}`;
    stats.sent++;
    let reply: Awaited<ReturnType<Transport["request"]>>;
    try {
      reply = await transport.request(subject, encodeJson({ command, args }), { timeoutMs });
    } catch (error) {
      if (error instanceof TransportError && error.failure === "no-responders") {
        stats.offline++;
        throw new Unavailable(`${device} is offline: nothing listens on ${subject}`, { device: refKey(ref) });
      }
      if (error instanceof TransportError && error.failure === "timeout") {
        stats.timedOut++;
        throw new DeadlineExceeded(`${device} did not answer command '${command}' within ${timeoutMs} ms`, {
          device: refKey(ref),
        });
      }
      stats.failed++;
      throw new Unavailable(`${device}: command '${command}' not sent: ${(error as Error).message}`);
    }
    let body: JsonObject;
    try {
      body = decodeCommandReply(reply.data, encodingOf(reply.headers), limits);
    } catch (error) {
      stats.failed++;
      throw new Unavailable(
        `${device} answered command '${command}' with a malformed reply: ${(error as Error).message}`,
      );
    }
    const wireError = body["error"];
    if (isJsonObject(wireError)) {
      stats.failed++;
      throw DoppelError.fromWire({
        code: String(wireError["code"] ?? "INTERNAL"),
        message: `${device}: ${String(wireError["message"] ?? "command failed")}`,
      } as WireError);
    }
    if (!("result" in body)) {
      stats.failed++;
      throw new Unavailable(`${device} answered command '${command}' without a result`);
    }
    stats.answered++;
    return body["result"] ?? null;
  };
}
