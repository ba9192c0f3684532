/** Parsing of CLI arguments that commander leaves as strings: JSON, times, counts. */
import { toMillis } from "../core/duration.ts";
import { InvalidArgument } from "../core/errors.ts";
import { type JsonObject, parseJsonObject } from "../core/json.ts";

/** Parses a JSON object argument (`'{"celsius": 22}'`), naming the argument on failure. */
export function jsonArgument(text: string | undefined, what: string): JsonObject {
  if (text === undefined || text.trim() === "") return {};
  return parseJsonObject(text, what, { maxBytes: 16 * 1024 * 1024, maxDepth: 64 });
}

/** A non-negative integer option. */
export function integerOption(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text))
    throw new InvalidArgument(`${what} must be a non-negative integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * A point in time: an ISO date (`2026-11-30T10:00:00Z`), epoch milliseconds, or a duration
 * meaning "that long ago" (`10m`, `2h`, `1d`).
 */
export function timeOption(text: string | undefined, what: string, now = Date.now()): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d{10,}$/.test(text)) return Number(text);
  if (/^\d+(\.\d+)?(ms|s|m|h|d)$/.test(text)) return now - toMillis(text as never, what);
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) {
    throw new InvalidArgument(
      `${what} must be an ISO time, epoch ms, or a duration ago like 10m; got ${JSON.stringify(text)}`,
    );
  }
  return parsed;
}
