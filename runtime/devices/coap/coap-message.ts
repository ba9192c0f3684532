/**
 * CoAP (RFC 7252) requests as Doppel reads them, before any twin is touched: the screening of raw
 * datagrams (what the CoAP library never sees), the resource paths that mirror the NATS device
 * subjects, the query parameters that carry the device's credential and report stamp, payload
 * decoding (JSON, Content-Format 50, or CBOR, 60) within the node's JSON limits, and the mapping
 * of Doppel's error codes to CoAP response codes.
 *
 * | path                          | method            | NATS subject                       |
 * |-------------------------------|-------------------|------------------------------------|
 * | `/v1/<type>/<id>/reported`    | POST              | `doppel.dev.<type>.<id>.reported`  |
 * | `/v1/<type>/<id>/telemetry`   | POST              | `doppel.dev.<type>.<id>.telemetry` |
 * | `/v1/<type>/<id>/desired`     | GET (+ Observe)   | `sync`, then every push on `desired` |
 *
 * Query parameters: `token` (the device's password from `doppel devices provision`), `seq` and
 * `at` (the `Doppel-Seq` and `Doppel-At` stamps), `id` (the report's message id, `Nats-Msg-Id`).
 */

import { Decoder, Encoder } from "cbor-x";
import { type ParsedPacket, parse as parsePacket } from "coap-packet";
import { DoppelError, ErrorCode, InvalidArgument, NotFound } from "../../core/errors.ts";
import { type TwinRef, twinRef } from "../../core/ids.ts";
import { type JsonLimits, type JsonObject, requireJsonObject } from "../../core/json.ts";
import { decodeJsonPayload } from "../protocol.ts";

/** Content-Format numbers (RFC 7252 §12.3, RFC 8949). */
export const ContentFormat = { Json: 50, Cbor: 60 } as const;
export type PayloadFormat = "json" | "cbor";

/** CoAP option numbers Doppel reads from raw packets. */
const Option = {
  Observe: 6,
  UriPath: 11,
  ContentFormat: 12,
  UriQuery: 15,
  Accept: 17,
  Block2: 23,
  Block1: 27,
} as const;

/** Largest payload of a response Doppel sends in one datagram (block-wise transfer is not offered). */
export const MAX_RESPONSE_PAYLOAD = 1024;

/** A CoAP response code and its diagnostic text. */
export interface CoapFailure {
  /** `4.00`, `5.03`... */
  readonly code: string;
  readonly diagnostic: string;
  /** Seconds a client should wait before retrying (Max-Age on 5.03). */
  readonly maxAgeSeconds?: number;
}

/** The CoAP response code of a Doppel error (see docs/devices.md, *CoAP*). */
export function coapFailureOf(error: unknown): CoapFailure {
  const failure = DoppelError.from(error);
  const diagnostic = `${failure.code}: ${failure.message}`;
  const retryAfterMs = Number(failure.details?.["retryAfterMs"]);
  switch (failure.code) {
    case ErrorCode.InvalidArgument:
      return failure.details?.["limit"] !== undefined && failure.details?.["size"] !== undefined
        ? { code: "4.13", diagnostic }
        : { code: "4.00", diagnostic };
    case ErrorCode.Unauthenticated:
      return { code: "4.01", diagnostic };
    case ErrorCode.PermissionDenied:
      return { code: "4.03", diagnostic };
    case ErrorCode.NotFound:
      return { code: "4.04", diagnostic };
    case ErrorCode.FailedPrecondition:
    case ErrorCode.VersionConflict:
      return { code: "4.12", diagnostic };
    case ErrorCode.ResourceExhausted:
    case ErrorCode.Unavailable:
    case ErrorCode.DeadlineExceeded:
    case ErrorCode.ConcurrencyConflict:
      return {
        code: "5.03",
        diagnostic,
        maxAgeSeconds: Number.isFinite(retryAfterMs) ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : 1,
      };
    default:
      return { code: "5.00", diagnostic };
  }
}

/** What screening a raw datagram decided. */
export type Screened =
  | { readonly pass: true; readonly packet: ParsedPacket }
  /** Not for the library: answer with `reply` (when there is one), else drop silently. */
  | { readonly pass: false; readonly reply?: Buffer; readonly reason: string };

function uintOf(value: Buffer): number {
  let n = 0;
  for (const byte of value) n = n * 256 + byte;
  return value.length > 4 ? Number.NaN : n;
}

function optionValues(packet: ParsedPacket, number: number): Buffer[] {
  return packet.options.filter((o) => optionNumber(o.name) === number).map((o) => o.value);
}

const NAMED: Record<string, number> = {
  Observe: Option.Observe,
  "Uri-Path": Option.UriPath,
  "Content-Format": Option.ContentFormat,
  "Uri-Query": Option.UriQuery,
  Accept: Option.Accept,
  Block2: Option.Block2,
  Block1: Option.Block1,
};

function optionNumber(name: string | number): number {
  return typeof name === "number" ? name : (NAMED[name] ?? Number(name));
}

/** Options Doppel understands or that are safe to ignore (RFC 7252 §5.4.1: unknown critical → 4.02). */
const KNOWN_CRITICAL = new Set([1, 3, 5, 7, 11, 15, 17, 23, 27, 35, 39]);

/**
 * A response to a request Doppel refuses itself (piggybacked on the ACK of a confirmable request,
 * a NON for a non-confirmable one).
 */
export function errorDatagram(
  request: { messageId: number; token: Buffer; confirmable: boolean },
  failure: CoapFailure,
): Buffer {
  // Generated by hand (not coap-packet's `generate`): a refusal never depends on a valid packet.
  const token = request.token.subarray(0, 8);
  const [cls, detail] = failure.code.split(".").map(Number) as [number, number];
  const type = request.confirmable ? 2 : 1; // ACK : NON
  const header = Buffer.from([
    0x40 | (type << 4) | token.length,
    (cls << 5) | detail,
    (request.messageId >> 8) & 0xff,
    request.messageId & 0xff,
  ]);
  const parts: Buffer[] = [header, token];
  if (failure.maxAgeSeconds !== undefined) {
    const seconds = Math.min(failure.maxAgeSeconds, 0xffff);
    // Max-Age is option 14: delta 14 from 0 needs the one-byte extension (13 + 1).
    parts.push(Buffer.from([0xd2, 14 - 13, (seconds >> 8) & 0xff, seconds & 0xff]));
  }
  const text = Buffer.from(failure.diagnostic.slice(0, 200), "utf8");
  if (text.length > 0) parts.push(Buffer.from([0xff]), text);
  return Buffer.concat(parts);
}

/** A Reset for a confirmable message Doppel cannot parse (RFC 7252 §4.2). */
function resetDatagram(messageId: number): Buffer {
  return Buffer.from([0x70, 0x00, (messageId >> 8) & 0xff, messageId & 0xff]);
}

/**
 * Screens one datagram before the CoAP library sees it, so that nothing in a datagram can make the
 * library throw, allocate by a length the sender chose, or answer the wrong peer:
 * - shorter than a header, another version, a token over 8 bytes: dropped (a confirmable one with
 *   a readable message id gets a Reset);
 * - options that do not parse: 4.02 Bad Option (diagnostic names the problem);
 * - block-wise transfer (Block1/Block2): 4.13 / 4.02, since the node accepts only what fits one
 *   datagram; an unknown critical option: 4.02; a Content-Format or Accept other than JSON (50)
 *   or CBOR (60): 4.15 / 4.06;
 * - responses, ACKs and RSTs pass (the library matches them to its own exchanges).
 */
export function screenDatagram(datagram: Buffer, maxDatagramBytes: number): Screened {
  if (datagram.length < 4) return { pass: false, reason: "shorter than a CoAP header" };
  const version = datagram[0]! >> 6;
  const type = (datagram[0]! >> 4) & 0x03;
  const tokenLength = datagram[0]! & 0x0f;
  const messageId = datagram.readUInt16BE(2);
  const confirmable = type === 0;
  if (version !== 1) return { pass: false, reason: "not CoAP version 1" };
  if (tokenLength > 8 || datagram.length < 4 + tokenLength) {
    return {
      pass: false,
      reason: "bad token length",
      ...(confirmable ? { reply: resetDatagram(messageId) } : {}),
    };
  }
  const token = datagram.subarray(4, 4 + tokenLength);
  const refuse = (code: string, diagnostic: string, reason: string): Screened => ({
    pass: false,
    reason,
    reply: errorDatagram({ messageId, token, confirmable }, { code, diagnostic }),
  });
  const isRequest = datagram[1]! >> 5 === 0 && (datagram[1]! & 0x1f) !== 0;
  if (datagram.length > maxDatagramBytes) {
    return isRequest
      ? refuse("4.13", `datagram of ${datagram.length} bytes; the limit is ${maxDatagramBytes}`, "too large")
      : { pass: false, reason: "too large" };
  }
  let packet: ParsedPacket;
  try {
    packet = parsePacket(datagram);
  } catch (error) {
    const problem = `malformed CoAP message: ${(error as Error).message}`;
    if (isRequest) return refuse("4.02", problem, "malformed options");
    return { pass: false, reason: problem, ...(confirmable ? { reply: resetDatagram(messageId) } : {}) };
  }
  if (!isRequest) return { pass: true, packet };
  if (optionValues(packet, Option.Block1).length > 0)
    return refuse("4.13", "block-wise transfer (Block1) is not supported: send one datagram", "block1");
  if (optionValues(packet, Option.Block2).length > 0)
    return refuse("4.02", "block-wise transfer (Block2) is not supported", "block2");
  for (const option of packet.options) {
    const number = optionNumber(option.name);
    if (number % 2 === 1 && !KNOWN_CRITICAL.has(number))
      return refuse("4.02", `unrecognised critical option ${number}`, "bad option");
  }
  for (const [number, code] of [
    [Option.ContentFormat, "4.15"],
    [Option.Accept, "4.06"],
  ] as const) {
    const values = optionValues(packet, number);
    if (values.length > 1) return refuse("4.02", `option ${number} given more than once`, "bad option");
    const value = values[0];
    if (value === undefined) continue;
    const format = uintOf(value);
    if (format !== ContentFormat.Json && format !== ContentFormat.Cbor) {
      const what = number === Option.ContentFormat ? "Content-Format" : "Accept";
      return refuse(code, `${what} ${format} is not supported: use 50 (JSON) or 60 (CBOR)`, "format");
    }
  }
  const observe = optionValues(packet, Option.Observe)[0];
  if (observe !== undefined && observe.length > 3)
    return refuse("4.02", "Observe is longer than 3 bytes", "bad option");
  return { pass: true, packet };
}

/** The resource of a request path. */
export type CoapResource = "reported" | "telemetry" | "desired";

/** A request's target and parameters. */
export interface CoapTarget {
  readonly ref: TwinRef;
  readonly resource: CoapResource;
  /** The device's password (`token` query parameter). */
  readonly token?: string;
  /** `Doppel-Seq` / `Doppel-At` / `Nats-Msg-Id` (query parameters `seq`, `at`, `id`). */
  readonly seq?: string;
  readonly at?: string;
  readonly messageId?: string;
}

const RESOURCES = new Set<string>(["reported", "telemetry", "desired"]);
const QUERY_NAMES = new Set(["token", "seq", "at", "id"]);

/**
 * Reads `/v1/<type>/<id>/<resource>` from a request's Uri-Path options and its parameters from its
 * Uri-Query options (each `name=value`; CoAP options are not percent-encoded). `NotFound` for
 * another path, `InvalidArgument` for an invalid type or id (naming the character) or a query
 * parameter Doppel does not know.
 */
export function parseTarget(paths: readonly string[], queries: readonly string[]): CoapTarget {
  if (paths.length !== 4 || paths[0] !== "v1" || !RESOURCES.has(paths[3]!)) {
    const shown = `/${paths.join("/")}`.slice(0, 200);
    throw new NotFound(
      `no CoAP resource ${JSON.stringify(shown)}: use /v1/<type>/<id>/reported, telemetry or desired`,
    );
  }
  const ref = twinRef(paths[1], paths[2]);
  const params = new Map<string, string>();
  for (const pair of queries) {
    const at = pair.indexOf("=");
    const name = at < 0 ? pair : pair.slice(0, at);
    if (!QUERY_NAMES.has(name))
      throw new InvalidArgument(
        `unknown query parameter ${JSON.stringify(name.slice(0, 40))}: token, seq, at, id`,
      );
    if (params.has(name)) throw new InvalidArgument(`query parameter ${name} given twice`);
    params.set(name, at < 0 ? "" : pair.slice(at + 1));
  }
  const id = params.get("id");
  if (id !== undefined && !/^[A-Za-z0-9_:.-]{1,128}$/.test(id))
    throw new InvalidArgument("query parameter id: 1-128 letters, digits, '_', ':', '.', '-'");
  return {
    ref,
    resource: paths[3] as CoapResource,
    ...optional("token", params.get("token")),
    ...optional("seq", params.get("seq")),
    ...optional("at", params.get("at")),
    ...optional("messageId", id),
  };
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

// Plain objects for maps, no records or structured clones: CBOR as JSON's binary twin.
const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });
const cborEncoder = new Encoder({ useRecords: false, mapsAsObjects: true });

/** Decodes a request payload (JSON or CBOR) into a bounded JSON object. */
export function decodePayload(
  data: Buffer,
  format: PayloadFormat,
  what: string,
  limits: JsonLimits,
): JsonObject {
  if (format === "json") return decodeJsonPayload(data, what, limits);
  if (data.byteLength > limits.maxBytes) {
    throw new InvalidArgument(`${what} is ${data.byteLength} bytes; the limit is ${limits.maxBytes}`, {
      size: data.byteLength,
      limit: limits.maxBytes,
    });
  }
  let value: unknown;
  try {
    value = cborDecoder.decode(data);
  } catch (error) {
    throw new InvalidArgument(`${what} is not valid CBOR: ${(error as Error).message.slice(0, 120)}`);
  }
  return requireJsonObject(value, what, limits);
}

/** Encodes a response payload. */
export function encodePayload(value: unknown, format: PayloadFormat): Buffer {
  return format === "cbor" ? Buffer.from(cborEncoder.encode(value)) : Buffer.from(JSON.stringify(value));
}

/** The payload format a Content-Format (or Accept) option names; absent: JSON. */
export function formatOf(contentFormat: unknown): PayloadFormat {
  return contentFormat === "application/cbor" || contentFormat === ContentFormat.Cbor ? "cbor" : "json";
}
