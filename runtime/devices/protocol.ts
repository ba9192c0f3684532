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
 * Replies to reports (when the sender asked for one) are `{ ok: true, version, duplicate }` or
 * `{ error: { code, message, details? } }`.
 *
 * MQTT devices use the same subjects through NATS's MQTT listener: MQTT topic
 * `doppel/dev/<type>/<id>/reported` is NATS subject `doppel.dev.<type>.<id>.reported`.
 */
import { DoppelError, InvalidArgument, type WireError } from "../core/errors.ts";
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
