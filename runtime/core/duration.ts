/** Durations in configuration and twin code: a number of milliseconds, or text like `"500ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"`. */
import { z } from "zod";
import { InvalidArgument } from "./errors.ts";

export type Duration = number | `${number}${"ms" | "s" | "m" | "h" | "d"}`;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Converts a {@link Duration} to milliseconds; throws {@link InvalidArgument} for anything else. */
export function toMillis(duration: Duration | string, what = "duration"): number {
  if (typeof duration === "number") {
    if (!Number.isFinite(duration) || duration < 0) {
      throw new InvalidArgument(`${what} must be a non-negative number of milliseconds, got ${duration}`);
    }
    return duration;
  }
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(duration.trim());
  if (!match) {
    throw new InvalidArgument(
      `${what} ${JSON.stringify(duration)} is not a duration like 500ms, 30s, 10m, 2h or 1d`,
    );
  }
  return Math.round(Number(match[1]) * (UNIT_MS[match[2]!] ?? 1));
}

/** A zod schema for a {@link Duration} in configuration; parses to milliseconds with a precise error. */
export const durationSchema = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  try {
    return toMillis(value as Duration);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

/**
 * A {@link durationSchema} that refuses zero: for timeouts, intervals and time-to-lives, where no
 * time at all makes no sense (a zero lease TTL, ack wait or heartbeat). The issue names the field.
 */
export const positiveDurationSchema = durationSchema.refine((ms) => ms > 0, {
  message: "must be a duration above zero (e.g. 500ms, 30s)",
});
