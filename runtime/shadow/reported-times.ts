/**
 * Per-field update times of `reported` (`reportedAt`): an object in the shape of `reported` whose
 * leaves are the epoch-ms times those leaves were last set. A report stamped with the device's
 * time changes only the leaves whose recorded time is not newer than its own, so a late field (a
 * report that was delayed, retried or redelivered after a newer one) never overwrites a newer
 * value. Reports without a device time are applied whole and stamped with the time they were
 * applied.
 *
 * Rules (pure functions; the runtime applies them when it folds `$reported` events):
 * - a leaf set by a patch gets the patch's time; an object value stamps each of its leaves;
 * - a key deleted by a patch (`null`) loses its time (a later older report may set it again);
 * - `lateLeavesDropped(patch, times, at)` keeps exactly the parts of `patch` that are not older
 *   than what they would replace; an object left empty is dropped.
 */
import { isJsonObject, type Json, type JsonObject } from "../core/json.ts";

/** The newest time recorded anywhere under `times` (a leaf or a subtree); -Infinity when none. */
function newest(times: Json | undefined): number {
  if (typeof times === "number") return times;
  if (!isJsonObject(times)) return Number.NEGATIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const value of Object.values(times)) max = Math.max(max, newest(value));
  return max;
}

/** Every leaf of `value` stamped `at` (an object keeps its shape; anything else is a leaf). */
function stampAll(value: Json, at: number): Json {
  if (!isJsonObject(value)) return at;
  const out: Record<string, Json> = {};
  for (const [key, inner] of Object.entries(value)) if (inner !== null) out[key] = stampAll(inner, at);
  return out;
}

/** The times after `patch` is merged into reported at time `at`. */
export function stampReported(times: JsonObject, patch: JsonObject, at: number): JsonObject {
  const out: Record<string, Json> = { ...times };
  for (const key in patch) {
    if (!Object.hasOwn(patch, key)) continue;
    const value = patch[key]!;
    if (value === null) {
      delete out[key];
    } else if (isJsonObject(value)) {
      const current = out[key];
      out[key] = isJsonObject(current) ? stampReported(current, value, at) : stampAll(value, at);
    } else {
      out[key] = at;
    }
  }
  return out;
}

/**
 * The part of `patch` (stamped `at`) that is not older than what it would change: a leaf whose
 * recorded time is newer than `at` is dropped; an object patch over an object recurses; any
 * other value replaces a whole subtree and is dropped if anything in that subtree is newer.
 */
export function lateLeavesDropped(patch: JsonObject, times: JsonObject, at: number): JsonObject {
  let changed = false;
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(patch)) {
    const recorded = times[key];
    if (isJsonObject(value) && isJsonObject(recorded)) {
      const inner = lateLeavesDropped(value, recorded, at);
      if (inner !== value) changed = true;
      if (Object.keys(inner).length > 0 || Object.keys(value).length === 0) out[key] = inner;
    } else if (newest(recorded) > at) {
      changed = true;
    } else {
      out[key] = value;
    }
  }
  return changed ? out : patch;
}
