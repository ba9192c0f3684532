/**
 * JSON values as twins see them, and the small set of pure operations the runtime needs on them:
 * deep equality, RFC 7396 merge patches, deep freezing, and checking that untrusted input is plain,
 * bounded JSON.
 */
import { InvalidArgument } from "./errors.ts";

export type JsonPrimitive = string | number | boolean | null;
export type Json = JsonPrimitive | readonly Json[] | JsonObject;
export interface JsonObject {
  readonly [key: string]: Json;
}

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Structural equality of two JSON values (object key order does not matter). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ao = a as JsonObject;
  const bo = b as JsonObject;
  const keys = Object.keys(ao);
  if (keys.length !== Object.keys(bo).length) return false;
  for (const key of keys) {
    if (!Object.hasOwn(bo, key) || !jsonEqual(ao[key], bo[key])) return false;
  }
  return true;
}

/**
 * Applies an RFC 7396 JSON merge patch: objects merge recursively, `null` deletes a key, anything
 * else replaces. Returns a new object; `target` is never modified.
 */
export function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: Record<string, Json> = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete out[key];
      continue;
    }
    const current = Object.hasOwn(out, key) ? out[key] : undefined;
    const next = isJsonObject(value) ? mergePatch(isJsonObject(current) ? current : {}, value) : value;
    // defineProperty, not assignment: a "__proto__" key from parsed JSON stays plain data.
    Object.defineProperty(out, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Freezes a value and everything reachable from it, so accidental mutation throws in strict mode. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Limits applied to untrusted JSON input. */
export interface JsonLimits {
  /** Largest encoded size in bytes. */
  readonly maxBytes: number;
  /** Deepest nesting of objects and arrays. */
  readonly maxDepth: number;
}

export const DEFAULT_JSON_LIMITS: JsonLimits = { maxBytes: 64 * 1024, maxDepth: 32 };

function checkValue(value: unknown, path: string, depth: number, limits: JsonLimits): void {
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new InvalidArgument(`${path} is not a finite number`, { path });
    return;
  }
  if (depth >= limits.maxDepth) {
    throw new InvalidArgument(`${path} is nested deeper than ${limits.maxDepth} levels`, { path });
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkValue(value[i], `${path}[${i}]`, depth + 1, limits);
    return;
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new InvalidArgument(`${path} is not a plain JSON object`, { path });
    }
    for (const [key, child] of Object.entries(value)) checkValue(child, `${path}.${key}`, depth + 1, limits);
    return;
  }
  throw new InvalidArgument(`${path} is not a JSON value (${typeof value})`, { path });
}

/**
 * Checks that `value` is a plain JSON object within `limits`, naming the offending path on failure
 * (`reported.temperature is not a finite number`). Returns it typed as a {@link JsonObject}.
 */
export function requireJsonObject(
  value: unknown,
  what: string,
  limits: JsonLimits = DEFAULT_JSON_LIMITS,
): JsonObject {
  if (!isJsonObject(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
    throw new InvalidArgument(`${what} must be a JSON object, got ${kind}`);
  }
  const size = Buffer.byteLength(JSON.stringify(value));
  if (size > limits.maxBytes) {
    throw new InvalidArgument(`${what} is ${size} bytes; the limit is ${limits.maxBytes}`, {
      size,
      limit: limits.maxBytes,
    });
  }
  checkValue(value, what, 0, limits);
  return value;
}

/** Parses JSON text from an untrusted source into a bounded JSON object, with a precise error. */
export function parseJsonObject(
  text: string,
  what: string,
  limits: JsonLimits = DEFAULT_JSON_LIMITS,
): JsonObject {
  const size = Buffer.byteLength(text);
  if (size > limits.maxBytes) {
    throw new InvalidArgument(`${what} is ${size} bytes; the limit is ${limits.maxBytes}`, {
      size,
      limit: limits.maxBytes,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgument(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  return requireJsonObject(value, what, limits);
}
