/**
 * Token buckets per principal: each holds up to `burst` tokens and refills at `ratePerSecond`; a
 * call takes one token or is refused with how long until one is back. Time comes from the node's
 * clock, so tests drive it with a manual clock. Idle buckets are dropped when full again, keeping
 * memory bounded by the principals active within one refill period.
 */
import type { Clock } from "../core/clock.ts";

/** A bucket's shape. */
export interface RateLimit {
  readonly ratePerSecond: number;
  /** Bucket size; default: one second's worth, at least 1. */
  readonly burst?: number;
}

/** The outcome of {@link RateLimiter.take}: allowed, or refused with a retry hint. */
export type RateDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

const ALLOWED: RateDecision = { allowed: true };

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  #sweptAt: number;

  constructor(private readonly clock: Clock) {
    this.#sweptAt = clock.now();
  }

  /** Takes one token from `key`'s bucket. */
  take(key: string, limit: RateLimit): RateDecision {
    const now = this.clock.now();
    const burst = limit.burst ?? Math.max(1, Math.ceil(limit.ratePerSecond));
    const perMs = limit.ratePerSecond / 1000;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: now };
      this.#buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
      bucket.at = now;
    }
    this.#sweep(now, burst / perMs);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return ALLOWED;
    }
    return { allowed: false, retryAfterMs: Math.max(1, Math.ceil((1 - bucket.tokens) / perMs)) };
  }

  /** Buckets currently kept (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Every so often, forgets buckets that have refilled completely (they would start full anyway). */
  #sweep(now: number, fullAfterMs: number): void {
    if (now - this.#sweptAt < Math.max(10_000, fullAfterMs)) return;
    this.#sweptAt = now;
    for (const [key, bucket] of this.#buckets) if (now - bucket.at >= fullAfterMs) this.#buckets.delete(key);
  }
}
