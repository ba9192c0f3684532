/**
 * The shadow every twin carries (as in AWS IoT Device Shadow and Eclipse Ditto): what the device
 * last `reported`, what services `desired`, and the `delta` between them. These functions are pure;
 * the runtime applies them when it folds the built-in `$reported` and `$desired` events.
 *
 * Rules:
 * - reported and desired change by JSON merge patch (`null` deletes a key);
 * - a desired leaf that equals the reported leaf at the same path is *met* and is cleared from
 *   desired, whichever side changed (so desired only ever holds what the device still has to do);
 * - delta = the desired leaves whose value differs from reported (arrays compare as whole values).
 */
import { isJsonObject, type Json, type JsonObject, jsonEqual, mergePatch } from "../core/json.ts";

/** The shadow part of a twin's state. */
export interface Shadow {
  readonly reported: JsonObject;
  readonly desired: JsonObject;
}

/** Desired leaves not (yet) equal to reported: what the device still has to change. */
export function computeDelta(desired: JsonObject, reported: JsonObject): JsonObject {
  const delta: Record<string, Json> = {};
  // for-in over own keys (the order of Object.entries), without an array of pairs per call.
  for (const key in desired) {
    if (!Object.hasOwn(desired, key)) continue;
    const want = desired[key]!;
    const have = reported[key];
    if (isJsonObject(want) && isJsonObject(have)) {
      const inner = computeDelta(want, have);
      if (!isEmpty(inner)) delta[key] = inner;
    } else if (!jsonEqual(want, have)) {
      delta[key] = want;
    }
  }
  return delta;
}

/** Removes from `desired` every leaf that `reported` already has; drops objects left empty. */
export function clearMet(desired: JsonObject, reported: JsonObject): JsonObject {
  let changed = false;
  const out: Record<string, Json> = {};
  for (const key in desired) {
    if (!Object.hasOwn(desired, key)) continue;
    const want = desired[key]!;
    const have = reported[key];
    if (isJsonObject(want) && isJsonObject(have)) {
      const inner = clearMet(want, have);
      if (inner !== want) changed = true;
      if (!isEmpty(inner)) out[key] = inner;
      else changed = true;
    } else if (jsonEqual(want, have)) {
      changed = true;
    } else {
      out[key] = want;
    }
  }
  return changed ? out : desired;
}

function isEmpty(object: JsonObject): boolean {
  for (const key in object) if (Object.hasOwn(object, key)) return false;
  return true;
}

/** Folds a reported patch into the shadow; desired leaves the device now meets are cleared. */
export function applyReported(shadow: Shadow, patch: JsonObject): Shadow {
  const reported = mergePatch(shadow.reported, patch);
  return { reported, desired: clearMet(shadow.desired, reported) };
}

/** Folds a desired patch into the shadow; leaves the device already meets are cleared at once. */
export function applyDesired(shadow: Shadow, patch: JsonObject): Shadow {
  const desired = clearMet(mergePatch(shadow.desired, patch), shadow.reported);
  return { reported: shadow.reported, desired };
}
