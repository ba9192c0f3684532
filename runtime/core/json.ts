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
  for (const key in patch) {
    if (!Object.hasOwn(patch, key)) continue;
    const value = patch[key]!;
    if (value === null) {
      delete out[key];
      continue;
    }
    const current = Object.hasOwn(out, key) ? out[key] : undefined;
    const next = isJsonObject(value) ? mergePatch(isJsonObject(current) ? current : {}, value) : value;
    // A "__proto__" key from parsed JSON stays plain data: defined, never assigned.
    if (key === "__proto__") {
      Object.defineProperty(out, key, { value: next, enumerable: true, writable: true, configurable: true });
    } else out[key] = next;
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

/**
 * Most bytes a finite number takes as JSON (`-1.7976931348623157e+308` is 24; the longest
 * decimal form, `-0.0000012345678901234567`, 25).
 */
const NUMBER_BOUND = 32;

/** Most bytes a string takes as JSON: every UTF-16 unit escaped as `\uXXXX`, and the quotes. */
function stringBound(text: string): number {
  return 6 * text.length + 2;
}

/**
 * An upper bound of `JSON.stringify(value)`'s UTF-8 size, from one walk that allocates nothing
 * (see {@link checkValue}, which computes it while checking); `Infinity` for anything that is not
 * JSON or is nested deeper than `maxDepth`. Where the bound is within a limit, the value is too,
 * without serialising it.
 */
export function jsonSizeBound(value: unknown, maxDepth = DEFAULT_JSON_LIMITS.maxDepth): number {
  return boundOf(value, 0, maxDepth);
}

function boundOf(value: unknown, depth: number, maxDepth: number): number {
  if (value === null) return 4;
  switch (typeof value) {
    case "string":
      return stringBound(value);
    case "boolean":
      return 5;
    case "number":
      return NUMBER_BOUND;
    case "object": {
      if (depth >= maxDepth) return Number.POSITIVE_INFINITY;
      let bound = 2;
      if (Array.isArray(value)) {
        for (const item of value) bound += boundOf(item, depth + 1, maxDepth) + 1;
        return bound;
      }
      const object = value as Record<string, unknown>;
      for (const key in object) {
        if (!Object.hasOwn(object, key)) continue;
        const child = object[key];
        // JSON.stringify leaves out undefined members.
        if (child !== undefined) bound += stringBound(key) + 2 + boundOf(child, depth + 1, maxDepth);
      }
      return bound;
    }
    default:
      return Number.POSITIVE_INFINITY;
  }
}

/** `path` of an error: the parent's path and the key or index, joined only when an error names it. */
type Path = string | { readonly parent: Path; readonly key: string | number };

function pathText(path: Path): string {
  if (typeof path === "string") return path;
  const parent = pathText(path.parent);
  return typeof path.key === "number" ? `${parent}[${path.key}]` : `${parent}.${path.key}`;
}

/**
 * Checks one value (see {@link requireJsonObject}) and returns an upper bound of its JSON size
 * (as {@link jsonSizeBound}). The path of a child is only spelled out when it is named in an error.
 */
function checkValue(value: unknown, path: Path, depth: number, limits: JsonLimits): number {
  if (value === null) return 4;
  switch (typeof value) {
    case "string":
      return stringBound(value);
    case "boolean":
      return 5;
    case "number":
      if (!Number.isFinite(value)) {
        const at = pathText(path);
        throw new InvalidArgument(`${at} is not a finite number`, { path: at });
      }
      return NUMBER_BOUND;
    case "object":
      break;
    default: {
      const at = pathText(path);
      throw new InvalidArgument(`${at} is not a JSON value (${typeof value})`, { path: at });
    }
  }
  if (depth >= limits.maxDepth) {
    const at = pathText(path);
    throw new InvalidArgument(`${at} is nested deeper than ${limits.maxDepth} levels`, { path: at });
  }
  let bound = 2;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      bound +=
        (isLeaf(item) ? leafBound(item) : checkValue(item, { parent: path, key: i }, depth + 1, limits)) + 1;
    }
    return bound;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const at = pathText(path);
    throw new InvalidArgument(`${at} is not a plain JSON object`, { path: at });
  }
  const object = value as Record<string, unknown>;
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    const child = object[key];
    // A valid leaf needs no path of its own (one is only spelled out for an error).
    bound +=
      stringBound(key) +
      2 +
      (isLeaf(child) ? leafBound(child) : checkValue(child, { parent: path, key }, depth + 1, limits));
  }
  return bound;
}

/** A string, boolean, finite number or null: a JSON leaf that is valid whatever its path. */
function isLeaf(value: unknown): value is string | boolean | number | null {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    default:
      return value === null;
  }
}

/** {@link checkValue}'s bound of a valid leaf. */
function leafBound(value: string | boolean | number | null): number {
  if (value === null) return 4;
  if (typeof value === "string") return stringBound(value);
  return typeof value === "boolean" ? 5 : NUMBER_BOUND;
}

function tooLarge(what: string, size: number, limits: JsonLimits): InvalidArgument {
  return new InvalidArgument(`${what} is ${size} bytes; the limit is ${limits.maxBytes}`, {
    size,
    limit: limits.maxBytes,
  });
}

/**
 * Checks that `value` is a plain JSON object within `limits`, naming the offending path on failure
 * (`reported.temperature is not a finite number`). Returns it typed as a {@link JsonObject}.
 * A value is serialised (to measure it exactly) only when the bound of its size found by the
 * check's walk is over `limits.maxBytes`; an oversized value is refused for its size first.
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
  let bound: number;
  try {
    bound = checkValue(value, what, 0, limits);
  } catch (error) {
    // A value both invalid and oversized is refused for its size, as it always was.
    let size = 0;
    try {
      size = Buffer.byteLength(JSON.stringify(value));
    } catch {
      throw error;
    }
    if (size > limits.maxBytes) throw tooLarge(what, size, limits);
    throw error;
  }
  if (bound > limits.maxBytes) {
    const size = Buffer.byteLength(JSON.stringify(value));
    if (size > limits.maxBytes) throw tooLarge(what, size, limits);
  }
  return value;
}

/** Parses JSON text from an untrusted source into a bounded JSON object, with a precise error. */
export function parseJsonObject(
  text: string,
  what: string,
  limits: JsonLimits = DEFAULT_JSON_LIMITS,
): JsonObject {
  const size = Buffer.byteLength(text);
  if (size > limits.maxBytes) throw tooLarge(what, size, limits);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgument(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  return requireJsonObject(value, what, limits);
}
