/**
 * Conversions between Doppel's JSON and the protobuf well-known types, in the shapes proto-loader
 * produces with the options of `proto.ts` (`{ fields: {...} }`, `{ kind: "numberValue", numberValue }`,
 * `{ seconds, nanos }`).
 *
 * Input from the wire is untrusted: anything malformed (a `Value` with no kind, a non-finite number,
 * nesting beyond {@link MAX_STRUCT_DEPTH}, an out-of-range timestamp) fails with `InvalidArgument`
 * naming the path, never with a crash. Size and depth limits of the node itself are checked later,
 * by the `TwinApi`.
 */
import { InvalidArgument } from "../core/errors.ts";
import type { Json, JsonObject } from "../core/json.ts";
import type { Duration, Duration__Output } from "./generated/google/protobuf/Duration.ts";
import type { Struct, Struct__Output } from "./generated/google/protobuf/Struct.ts";
import type { Timestamp, Timestamp__Output } from "./generated/google/protobuf/Timestamp.ts";
import type { Value, Value__Output } from "./generated/google/protobuf/Value.ts";

/**
 * Deepest nesting accepted when decoding. Above any sensible node limit (`maxJsonDepth` is at most
 * 256), so the node's own check names the real limit; this one only keeps recursion bounded.
 */
export const MAX_STRUCT_DEPTH = 300;

/** Largest Timestamp seconds accepted (9999-12-31T23:59:59Z), as the protobuf spec bounds them. */
const MAX_TIMESTAMP_SECONDS = 253_402_300_799;
/** Smallest Timestamp seconds accepted (0001-01-01T00:00:00Z). */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Sets `key` as an own data property, so a key named `__proto__` stays data, never a prototype. */
function define(target: Record<string, Json>, key: string, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function decodeValue(value: unknown, path: string, depth: number): Json {
  if (!isRecord(value)) throw new InvalidArgument(`${path} is not a google.protobuf.Value`, { path });
  switch (value["kind"]) {
    case "nullValue":
      return null;
    case "numberValue": {
      const n = value["numberValue"];
      if (typeof n !== "number" || !Number.isFinite(n)) {
        throw new InvalidArgument(`${path} is not a finite number`, { path });
      }
      return n;
    }
    case "stringValue": {
      const s = value["stringValue"];
      if (typeof s !== "string") throw new InvalidArgument(`${path} is not a string`, { path });
      return s;
    }
    case "boolValue": {
      const b = value["boolValue"];
      if (typeof b !== "boolean") throw new InvalidArgument(`${path} is not a boolean`, { path });
      return b;
    }
    case "structValue":
      return decodeStruct(value["structValue"], path, depth + 1);
    case "listValue": {
      if (depth + 1 > MAX_STRUCT_DEPTH) {
        throw new InvalidArgument(`${path} is nested deeper than ${MAX_STRUCT_DEPTH} levels`, { path });
      }
      const list = value["listValue"];
      const values = isRecord(list) ? list["values"] : undefined;
      if (!Array.isArray(values)) throw new InvalidArgument(`${path} is not a list`, { path });
      return values.map((item, i) => decodeValue(item, `${path}[${i}]`, depth + 1));
    }
    default:
      throw new InvalidArgument(`${path} has no value set (a google.protobuf.Value needs one kind)`, {
        path,
      });
  }
}

function decodeStruct(struct: unknown, path: string, depth: number): JsonObject {
  if (depth > MAX_STRUCT_DEPTH) {
    throw new InvalidArgument(`${path} is nested deeper than ${MAX_STRUCT_DEPTH} levels`, { path });
  }
  if (!isRecord(struct)) throw new InvalidArgument(`${path} is not a google.protobuf.Struct`, { path });
  const fields = struct["fields"] ?? {};
  if (!isRecord(fields)) throw new InvalidArgument(`${path} has malformed fields`, { path });
  const out: Record<string, Json> = {};
  for (const key of Object.keys(fields)) define(out, key, decodeValue(fields[key], `${path}.${key}`, depth));
  return out;
}

/**
 * Converts a `google.protobuf.Struct` from the wire to a JSON object. An unset message (`null` or
 * `undefined`) is the empty object. `what` names the field in error messages (`"args"`).
 * Fails with `InvalidArgument` on anything malformed.
 */
export function structToJson(struct: Struct__Output | null | undefined, what: string): JsonObject {
  if (struct === null || struct === undefined) return {};
  return decodeStruct(struct, what, 0);
}

/**
 * Converts a `google.protobuf.Value` from the wire to JSON. An unset message is `null`.
 * Fails with `InvalidArgument` on anything malformed.
 */
export function valueToJson(value: Value__Output | null | undefined, what: string): Json {
  if (value === null || value === undefined) return null;
  return decodeValue(value, what, 0);
}

/**
 * Converts JSON to a `google.protobuf.Value`. Total: what JSON cannot hold but a buggy twin could
 * leave in its state (`undefined`, a non-finite number, a function) becomes `null`, as
 * `JSON.stringify` would make it, instead of failing the response.
 */
export function jsonToValue(value: Json | undefined): Value {
  if (typeof value === "number") {
    return Number.isFinite(value) ? { numberValue: value } : { nullValue: "NULL_VALUE" };
  }
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: (value as readonly Json[]).map(jsonToValue) } };
  if (typeof value === "object" && value !== null) return { structValue: jsonToStruct(value as JsonObject) };
  return { nullValue: "NULL_VALUE" };
}

/** Converts a JSON object to a `google.protobuf.Struct`; keys whose value is `undefined` are left out. */
export function jsonToStruct(object: JsonObject): Struct {
  // Object.fromEntries defines own properties, so a `__proto__` key survives as a field.
  const entries = Object.entries(object as Record<string, Json | undefined>).filter(
    ([, v]) => v !== undefined,
  );
  return { fields: Object.fromEntries(entries.map(([key, v]) => [key, jsonToValue(v)])) };
}

/** Converts epoch milliseconds to a `google.protobuf.Timestamp` (nanos always in 0..999,999,999). */
export function msToTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.floor((ms - seconds * 1000) * 1e6) };
}

/**
 * Converts a `google.protobuf.Timestamp` from the wire to epoch milliseconds (sub-millisecond
 * nanos are truncated); an unset message is `undefined`. Fails with `InvalidArgument` when seconds
 * or nanos are out of the protobuf-defined range.
 */
export function timestampToMs(ts: Timestamp__Output | null | undefined, what: string): number | undefined {
  if (ts === null || ts === undefined) return undefined;
  const { seconds, nanos } = ts;
  if (!Number.isSafeInteger(seconds) || seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS) {
    throw new InvalidArgument(`${what}: timestamp seconds out of range`, { field: what });
  }
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw new InvalidArgument(`${what}: timestamp nanos must be 0..999999999`, { field: what });
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

/** Converts a non-negative number of milliseconds to a `google.protobuf.Duration`. */
export function msToDuration(ms: number): Duration {
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.trunc((ms - seconds * 1000) * 1e6) };
}

/**
 * Converts a `google.protobuf.Duration` from the wire to milliseconds (sub-millisecond nanos are
 * truncated); an unset message is `undefined`. Fails with `InvalidArgument` for a negative or
 * malformed duration (seconds and nanos of different signs, nanos beyond ±999,999,999).
 */
export function durationToMs(
  duration: Duration__Output | null | undefined,
  what: string,
): number | undefined {
  if (duration === null || duration === undefined) return undefined;
  const { seconds, nanos } = duration;
  if (!Number.isSafeInteger(seconds) || !Number.isInteger(nanos) || Math.abs(nanos) > 999_999_999) {
    throw new InvalidArgument(`${what}: malformed duration`, { field: what });
  }
  if (seconds < 0 || nanos < 0)
    throw new InvalidArgument(`${what}: duration must not be negative`, { field: what });
  const ms = seconds * 1000 + Math.trunc(nanos / 1e6);
  if (!Number.isSafeInteger(ms)) throw new InvalidArgument(`${what}: duration too long`, { field: what });
  return ms;
}
