/**
 * Each device's token bucket of reports and telemetry messages (`limits.deviceRate`): one per
 * node, shared by every way a device's messages arrive, so a device has one rate whatever it
 * speaks (NATS, MQTT, CoAP, HTTP).
 *
 * A message is charged once. A request/response listener (CoAP, HTTP) charges it as it arrives,
 * before the device is told it is stored ({@link DeviceRate.prepay}); ingress, which sees the same
 * message again when it is consumed from the stream, then finds it paid for and lets it through
 * ({@link DeviceRate.take}) instead of charging it a second time and dropping a message that was
 * already acknowledged. Paid-for message ids are kept until ingress takes them, at most
 * {@link MAX_PREPAID} (the oldest are forgotten first: such a message is charged again); a message
 * consumed by another node (a cluster) is charged there too, as each node keeps its own buckets.
 * A message no ingress of this node will take (at an edge: what the edge streams forward) is
 * charged without being remembered ({@link DeviceRate.charge}), so it cannot push out the others.
 */
import type { Clock } from "../../core/clock.ts";
import { ResourceExhausted } from "../../core/errors.ts";
import { type RateDecision, type RateLimit, RateLimiter } from "../../security/rate-limiter.ts";

/** Most paid-for message ids remembered. */
export const MAX_PREPAID = 100_000;

const ALLOWED: RateDecision = { allowed: true };

export class DeviceRate {
  readonly #limiter: RateLimiter;
  /** `device\nmessageId` of messages charged on arrival, oldest first. */
  readonly #prepaid = new Set<string>();

  constructor(
    clock: Clock,
    readonly limit: RateLimit,
  ) {
    this.#limiter = new RateLimiter(clock);
  }

  /** Charges one message of `device` unless it was paid for on arrival (`messageId`). */
  take(device: string, messageId?: string): RateDecision {
    if (messageId !== undefined && this.#prepaid.delete(`${device}\n${messageId}`)) return ALLOWED;
    return this.#limiter.take(device, this.limit);
  }

  /**
   * Charges a message that arrived over a request/response protocol, remembering it as paid for;
   * over the rate: `ResourceExhausted` with `retryAfterMs`.
   */
  prepay(device: string, messageId: string): void {
    this.charge(device);
    this.#prepaid.add(`${device}\n${messageId}`);
    if (this.#prepaid.size > MAX_PREPAID) {
      const oldest = this.#prepaid.values().next().value;
      if (oldest !== undefined) this.#prepaid.delete(oldest);
    }
  }

  /**
   * Charges a message that arrived over a request/response protocol and that no ingress of this
   * node takes from the stream (a thick edge's forwarded types, an edge's telemetry): nothing is
   * remembered. Over the rate: `ResourceExhausted` with `retryAfterMs`.
   */
  charge(device: string): void {
    const decision = this.#limiter.take(device, this.limit);
    if (!decision.allowed) throw this.exhausted(device, decision.retryAfterMs);
  }

  /** Forgets a paid-for message that was not stored after all (its token stays spent). */
  forget(device: string, messageId: string): void {
    this.#prepaid.delete(`${device}\n${messageId}`);
  }

  /** Paid-for messages not yet taken by ingress (for tests). */
  get prepaid(): number {
    return this.#prepaid.size;
  }

  /** The refusal of a message over `device`'s rate. */
  exhausted(device: string, retryAfterMs: number, dropped = false): ResourceExhausted {
    return new ResourceExhausted(
      `device ${device} is over its rate of ${this.limit.ratePerSecond} messages/s (burst ${this.limit.burst ?? "1 s"}); ${dropped ? "this message was dropped, " : ""}retry in ${retryAfterMs} ms`,
      { retryAfterMs, limit: "device-rate" },
    );
  }
}
