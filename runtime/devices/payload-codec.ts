/**
 * Device payload encodings. JSON is the default; a message whose NATS headers say
 * `Content-Type: application/x-protobuf` is a protobuf message of
 * `proto/doppel/device/v1/device.proto` (for constrained devices). Both decode into the same JSON
 * shapes, so the rest of ingress sees one form. Every decoder bounds size and nesting first and
 * fails only with `InvalidArgument` naming what is wrong — a payload that does not decode can never
 * throw anything else out of here.
 */
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import type { Headers } from "../../cluster/transport/transport.ts";
import { InvalidArgument } from "../core/errors.ts";
import {
  isJsonObject,
  type Json,
  type JsonLimits,
  type JsonObject,
  requireJsonObject,
} from "../core/json.ts";
import { decodeJsonPayload, encodeJson } from "./protocol.ts";

/** The header that selects the encoding, and its two values. */
export const CONTENT_TYPE = "Content-Type";
export const JSON_TYPE = "application/json";
export const PROTOBUF_TYPE = "application/x-protobuf";

export type Encoding = "json" | "protobuf";

/** The encoding a message declares (`json` when it declares none or an unknown one). */
export function encodingOf(headers: Headers | undefined): Encoding {
  const type = headers?.get(CONTENT_TYPE) ?? headers?.get(CONTENT_TYPE.toLowerCase());
  return type !== undefined && type.split(";")[0]?.trim().toLowerCase() === PROTOBUF_TYPE
    ? "protobuf"
    : "json";
}

/** Headers that declare `encoding` (none for JSON, the default). */
export function encodingHeaders(encoding: Encoding): Headers | undefined {
  return encoding === "protobuf" ? new Map([[CONTENT_TYPE, PROTOBUF_TYPE]]) : undefined;
}

/** Where the device protocol's .proto lives (the repository's `proto/`). */
export const DEVICE_PROTO = fileURLToPath(
  new URL("../../proto/doppel/device/v1/device.proto", import.meta.url),
);

let root: protobuf.Root | undefined;

/** The message type `name` of package `doppel.device.v1` (the .proto is parsed once, lazily). */
export function deviceMessage(name: string): protobuf.Type {
  root ??= protobuf.loadSync(DEVICE_PROTO);
  return root.lookupType(`doppel.device.v1.${name}`);
}

// ---- protobuf Value <-> JSON ----

interface PbValue {
  nullValue?: boolean;
  number?: number;
  text?: string;
  flag?: boolean;
  object?: { fields?: Record<string, PbValue> };
  list?: { values?: PbValue[] };
}

function fromPbValue(value: PbValue, path: string, depth: number, limits: JsonLimits): Json {
  if (depth > limits.maxDepth)
    throw new InvalidArgument(`${path} is nested deeper than ${limits.maxDepth} levels`);
  if (value.number !== undefined && value.number !== null) return value.number;
  if (value.text !== undefined && value.text !== null) return value.text;
  if (value.flag !== undefined && value.flag !== null) return value.flag;
  if (value.object) return fromPbFields(value.object.fields ?? {}, path, depth + 1, limits);
  if (value.list)
    return (value.list.values ?? []).map((v, i) => fromPbValue(v, `${path}[${i}]`, depth + 1, limits));
  return null;
}

function fromPbFields(
  fields: Record<string, PbValue>,
  path: string,
  depth: number,
  limits: JsonLimits,
): JsonObject {
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(fields))
    out[key] = fromPbValue(value, `${path}.${key}`, depth, limits);
  return out;
}

function toPbValue(value: Json | undefined): PbValue {
  if (value === null || value === undefined) return { nullValue: true };
  if (typeof value === "number") return { number: value };
  if (typeof value === "string") return { text: value };
  if (typeof value === "boolean") return { flag: value };
  if (Array.isArray(value)) return { list: { values: value.map(toPbValue) } };
  return { object: { fields: toPbFields(value as JsonObject) } };
}

function toPbFields(object: JsonObject): Record<string, PbValue> {
  const out: Record<string, PbValue> = {};
  for (const [key, value] of Object.entries(object)) out[key] = toPbValue(value);
  return out;
}

function decodePb(type: string, data: Uint8Array, what: string, limits: JsonLimits): Record<string, unknown> {
  if (data.byteLength > limits.maxBytes) {
    throw new InvalidArgument(`${what} is ${data.byteLength} bytes; the limit is ${limits.maxBytes}`, {
      size: data.byteLength,
      limit: limits.maxBytes,
    });
  }
  try {
    const message = deviceMessage(type).decode(data);
    return deviceMessage(type).toObject(message, { longs: Number, defaults: false, oneofs: false }) as Record<
      string,
      unknown
    >;
  } catch (error) {
    const reason = error instanceof RangeError ? "nested too deeply" : (error as Error).message;
    throw new InvalidArgument(`${what} is not a valid protobuf doppel.device.v1.${type}: ${reason}`);
  }
}

// ---- what ingress decodes ----

/** A reported-state patch (JSON object, or protobuf `Reported`). */
export function decodeReported(data: Uint8Array, encoding: Encoding, limits: JsonLimits): JsonObject {
  const what = "reported patch";
  if (encoding === "json") return decodeJsonPayload(data, what, limits);
  const message = decodePb("Reported", data, what, limits);
  const fields = (message["fields"] ?? {}) as Record<string, PbValue>;
  return requireJsonObject(fromPbFields(fields, what, 0, limits), what, limits);
}

/**
 * A telemetry body in its JSON shape: `{ at?, metrics }` or `{ samples: [...] }` (protobuf
 * `Telemetry` becomes the latter; `at_ms` 0 means "now", i.e. no `at`).
 */
export function decodeTelemetry(data: Uint8Array, encoding: Encoding, limits: JsonLimits): JsonObject {
  const what = "telemetry";
  if (encoding === "json") return decodeJsonPayload(data, what, limits);
  const message = decodePb("Telemetry", data, what, limits);
  const samples = ((message["samples"] ?? []) as { atMs?: number; metrics?: Record<string, number> }[]).map(
    (sample): JsonObject => {
      const metrics: JsonObject = { ...(sample.metrics ?? {}) };
      return sample.atMs ? { at: sample.atMs, metrics } : { metrics };
    },
  );
  return { samples };
}

/** A sync reply (`{ version, reported, desired, delta }`) in `encoding`. */
export function encodeDeviceState(
  state: { version: number; reported: JsonObject; desired: JsonObject; delta: JsonObject },
  encoding: Encoding,
): Uint8Array {
  if (encoding === "json") return encodeJson(state);
  const type = deviceMessage("DeviceState");
  return type
    .encode(
      type.fromObject({
        version: state.version,
        desired: toPbFields(state.desired),
        delta: toPbFields(state.delta),
        reported: toPbFields(state.reported),
      }),
    )
    .finish();
}

/** Decodes a protobuf `DeviceState` (the device side of a protobuf sync). */
export function decodeDeviceState(
  data: Uint8Array,
  limits: JsonLimits,
): {
  version: number;
  reported: JsonObject;
  desired: JsonObject;
  delta: JsonObject;
} {
  const message = decodePb("DeviceState", data, "sync reply", limits);
  const fields = (name: string) =>
    fromPbFields((message[name] ?? {}) as Record<string, PbValue>, name, 0, limits);
  return {
    version: Number(message["version"] ?? 0),
    reported: fields("reported"),
    desired: fields("desired"),
    delta: fields("delta"),
  };
}

/** Encodes a protobuf message of the device protocol from its JSON form (device side, tests). */
export function encodeProtobuf(
  type: "Reported" | "Telemetry" | "Command" | "CommandReply" | "Error",
  value: JsonObject,
): Uint8Array {
  const message = deviceMessage(type);
  let object: Record<string, unknown>;
  switch (type) {
    case "Reported":
      object = { fields: toPbFields(value) };
      break;
    case "Telemetry": {
      const samples = Array.isArray(value["samples"]) ? value["samples"] : [value];
      object = {
        samples: samples.filter(isJsonObject).map((s) => ({
          atMs: typeof s["at"] === "number" ? s["at"] : 0,
          metrics: isJsonObject(s["metrics"]) ? s["metrics"] : {},
        })),
      };
      break;
    }
    case "Command":
      object = {
        command: value["command"],
        args: toPbFields(isJsonObject(value["args"]) ? value["args"] : {}),
      };
      break;
    case "CommandReply":
      object = isJsonObject(value["error"])
        ? { error: value["error"] }
        : { result: toPbValue(value["result"] as Json | undefined) };
      break;
    case "Error":
      object = value;
      break;
  }
  return message.encode(message.fromObject(object)).finish();
}

/** Decodes a device's answer to a command: `{ result }` or `{ error }`, in either encoding. */
export function decodeCommandReply(data: Uint8Array, encoding: Encoding, limits: JsonLimits): JsonObject {
  const what = "command reply";
  if (encoding === "json") return decodeJsonPayload(data, what, limits);
  const message = decodePb("CommandReply", data, what, limits);
  if (isJsonObject(message["error"] as Json)) return { error: message["error"] as JsonObject };
  return { result: fromPbValue((message["result"] ?? {}) as PbValue, "result", 0, limits) };
}
