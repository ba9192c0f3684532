/**
 * The device protocol: which subjects a device uses and what travels on them. Each twin has its
 * own subjects, with the twin's type and id as whole tokens, so a device's NATS permissions can be
 * limited to `doppel.dev.<type>.<id>.>`:
 *
 * | subject                              | direction        | payload                                    |
 * |--------------------------------------|------------------|--------------------------------------------|
 * | `doppel.dev.<type>.<id>.reported`    | device → twin    | JSON merge patch of reported state         |
 * | `doppel.dev.<type>.<id>.telemetry`   | device → twin    | `{ at?, metrics: { name: number } }` or a list of them |
 * | `doppel.dev.<type>.<id>.sync`        | device → twin, request | empty; reply: `{ version, reported, desired, delta }` |
 * | `doppel.dev.<type>.<id>.desired`     | twin → device    | `{ version, desired, delta }` after desired changes |
 * | `doppel.dev.<type>.<id>.cmd`         | twin → device, request | `{ command, args, id }`; reply: `{ result }` or `{ error }` |
 * | `doppel.dev.<type>.<id>.cmd-result`  | device → twin    | `{ id, result }` or `{ id, error }`: the answer of a device that cannot reply (MQTT) |
 * | `doppel.dev.<type>.<id>.errors`      | twin → device    | `{ code, message, subject }` for rejected input |
 *
 * A device's own NATS connection uses the inbox prefix `_INBOX.doppel.<type>.<id>` for the replies
 * it asks for (sync replies, PubAcks), so its permissions can allow only its own inbox (see
 * `devices/auth/device-permissions.ts`).
 *
 * A report may carry a `Nats-Msg-Id` header: a re-sent report with the same id is applied once.
 * A report may be stamped (see {@link reportStamp}): `Doppel-Seq` (a per-device sequence number
 * that grows with every report) makes the twin apply it at most once and never after a later
 * one — on every delivery, whatever its message id; `Doppel-At` (the device's epoch ms) keeps a
 * late field from overwriting a newer one. MQTT 3.1.1 has no headers: put `"$seq"` and `"$at"`
 * in the JSON patch itself (they are taken out before the patch is applied).
 * Replies to reports (when the sender asked for one) are `{ ok: true, version, duplicate }` or
 * `{ error: { code, message, details? } }`.
 *
 * MQTT devices use the same subjects through NATS's MQTT listener: MQTT topic
 * `doppel/dev/<type>/<id>/reported` is NATS subject `doppel.dev.<type>.<id>.reported`.
 */
import { TransportError } from "../../cluster/transport/transport.ts";
import {
  DeadlineExceeded,
  DoppelError,
  InvalidArgument,
  ResourceExhausted,
  Unavailable,
  type WireError,
} from "../core/errors.ts";
import { type TwinRef, twinRef } from "../core/ids.ts";
import { type JsonLimits, type JsonObject, parseJsonObject } from "../core/json.ts";

/** First two tokens of every device subject. */
export const DEVICE_PREFIX = "doppel.dev";

/** The channels of a twin's device subjects. */
export const DeviceChannel = {
  Reported: "reported",
  Telemetry: "telemetry",
  Sync: "sync",
  Desired: "desired",
  Command: "cmd",
  CommandResult: "cmd-result",
  Errors: "errors",
} as const;
export type DeviceChannel = (typeof DeviceChannel)[keyof typeof DeviceChannel];

const CHANNELS = new Set<string>(Object.values(DeviceChannel));

/** The subject of `channel` for twin `ref` (ids must already be valid). */
export function deviceSubject(ref: TwinRef, channel: DeviceChannel): string {
  return `${DEVICE_PREFIX}.${ref.type}.${ref.id}.${channel}`;
}

/** The prefix of a device connection's reply subjects: `_INBOX.doppel.<type>.<id>`. */
export function deviceInboxPrefix(ref: TwinRef): string {
  return `_INBOX.doppel.${ref.type}.${ref.id}`;
}

/** A wildcard subject for one channel of every twin. */
export function deviceWildcard(channel: DeviceChannel): string {
  return `${DEVICE_PREFIX}.*.*.${channel}`;
}

/** Splits and validates a device subject; `InvalidArgument` names what is wrong. */
export function parseDeviceSubject(subject: string): { ref: TwinRef; channel: DeviceChannel } {
  const tokens = subject.split(".");
  if (tokens.length !== 5 || `${tokens[0]}.${tokens[1]}` !== DEVICE_PREFIX) {
    throw new InvalidArgument(
      `subject ${JSON.stringify(subject)} is not ${DEVICE_PREFIX}.<type>.<id>.<channel>`,
    );
  }
  const channel = tokens[4] ?? "";
  if (!CHANNELS.has(channel)) throw new InvalidArgument(`unknown device channel '${channel}'`);
  return { ref: twinRef(tokens[2], tokens[3]), channel: channel as DeviceChannel };
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Decodes a UTF-8 JSON object payload within limits. */
export function decodeJsonPayload(data: Uint8Array, what: string, limits: JsonLimits): JsonObject {
  if (data.byteLength > limits.maxBytes) {
    throw new InvalidArgument(`${what} is ${data.byteLength} bytes; the limit is ${limits.maxBytes}`, {
      size: data.byteLength,
      limit: limits.maxBytes,
    });
  }
  let text: string;
  try {
    text = decoder.decode(data);
  } catch {
    throw new InvalidArgument(`${what} is not valid UTF-8`);
  }
  return parseJsonObject(text, what, limits);
}

/** Encodes any JSON value as a payload. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** What a device gets when desired state changes. */
export interface DesiredPush {
  readonly version: number;
  readonly desired: JsonObject;
  readonly delta: JsonObject;
}

/** The reply to a sync request. */
export interface SyncReply extends DesiredPush {
  readonly reported: JsonObject;
}

/** The reply to a report. */
export type ReportReply =
  | { readonly ok: true; readonly version: number; readonly duplicate: boolean }
  | { readonly error: WireError };

/** A command sent to a device. */
export interface DeviceCommand {
  readonly command: string;
  readonly args: JsonObject;
  /** Names the command in an answer published on `cmd-result` (devices that cannot reply). */
  readonly id?: string;
}

/** A device's answer to a command. */
export type DeviceCommandReply = { readonly result: unknown } | { readonly error: WireError };

/** The wire form of an error reply. */
export function errorReply(error: unknown): { error: WireError } {
  return { error: DoppelError.from(error).toWire() };
}

/**
 * What a failed publish or request on a device subject means to the device: no acknowledgement in
 * time (`DEADLINE_EXCEEDED`), nobody listening or no stream capturing the subject, or a server
 * refusal (`UNAVAILABLE`; a refusal for size is `INVALID_ARGUMENT`). `what` names the operation.
 */
export function transportFailure(error: unknown, what: string): DoppelError {
  if (error instanceof TransportError) {
    if (error.failure === "timeout") return new DeadlineExceeded(`${what}: no acknowledgement in time`);
    if (error.failure === "no-responders") return new Unavailable(`${what}: no Doppel node is listening`);
    if (error.failure === "rejected") {
      // A stream at its limits with `discard: new` (an edge's full outage buffer): retry later.
      if (/maximum (bytes|messages) exceeded|resource limits exceeded/i.test(error.message))
        return new ResourceExhausted(`${what}: the stream is full: ${error.message}`);
      return /size|payload|too large/i.test(error.message)
        ? new InvalidArgument(`${what}: refused by the server: ${error.message}`)
        : new Unavailable(`${what}: refused by the server: ${error.message}`);
    }
    return new Unavailable(`${what}: ${error.message}`);
  }
  return DoppelError.from(error);
}

/** Header of a report's per-device sequence number (decimal, 1 to 2^53 - 1). */
export const SEQ_HEADER = "Doppel-Seq";
/** Header of a report's device time (decimal epoch ms). */
export const AT_HEADER = "Doppel-At";
/** Fields of a JSON reported patch that carry the same stamp (for publishers without headers: MQTT). */
export const SEQ_FIELD = "$seq";
export const AT_FIELD = "$at";

/** A report's stamp: its per-device sequence number and device time, when it has them. */
export interface ReportStamp {
  readonly seq?: number;
  readonly at?: number;
}

function stampValue(raw: unknown, what: string, min: number): number | undefined {
  if (raw === undefined || raw === null) return undefined;
  // Headers are text (decimal digits); fields are JSON numbers.
  const header = what.startsWith("header");
  const value = header && typeof raw === "string" && /^[0-9]{1,16}$/.test(raw) ? Number(raw) : raw;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgument(
      `${what} must be an integer from ${min} to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/**
 * The stamp of a report, from its headers (`Doppel-Seq`, `Doppel-At`) or, for publishers without
 * headers, the patch's `$seq` and `$at` fields, and the patch without those fields. A header and a
 * field that disagree, or a stamp that is not an integer in range, is `InvalidArgument`.
 */
export function reportStamp(
  headers: { get(name: string): string | undefined } | undefined,
  patch: JsonObject,
): { stamp: ReportStamp; patch: JsonObject } {
  const fromField = { seq: patch[SEQ_FIELD], at: patch[AT_FIELD] };
  let body = patch;
  if (fromField.seq !== undefined || fromField.at !== undefined) {
    const { [SEQ_FIELD]: _seq, [AT_FIELD]: _at, ...rest } = patch;
    body = rest;
  }
  const seqHeader = stampValue(headers?.get(SEQ_HEADER) || undefined, `header ${SEQ_HEADER}`, 1);
  const atHeader = stampValue(headers?.get(AT_HEADER) || undefined, `header ${AT_HEADER}`, 0);
  const seqField = stampValue(fromField.seq, `field ${SEQ_FIELD}`, 1);
  const atField = stampValue(fromField.at, `field ${AT_FIELD}`, 0);
  if (seqHeader !== undefined && seqField !== undefined && seqHeader !== seqField)
    throw new InvalidArgument(
      `header ${SEQ_HEADER} (${seqHeader}) and field ${SEQ_FIELD} (${seqField}) differ`,
    );
  if (atHeader !== undefined && atField !== undefined && atHeader !== atField)
    throw new InvalidArgument(`header ${AT_HEADER} (${atHeader}) and field ${AT_FIELD} (${atField}) differ`);
  const seq = seqHeader ?? seqField;
  const at = atHeader ?? atField;
  return {
    stamp: { ...(seq === undefined ? {} : { seq }), ...(at === undefined ? {} : { at }) },
    patch: body,
  };
}

/**
 * The device subjects of `channel` for `types` (`doppel.dev.<type>.*.<channel>` each), or for
 * every type (`doppel.dev.*.*.<channel>`) when `types` is absent.
 */
export function deviceSubjects(channel: DeviceChannel, types?: readonly string[]): string[] {
  return types ? types.map((type) => `${DEVICE_PREFIX}.${type}.*.${channel}`) : [deviceWildcard(channel)];
}
