/**
 * `ShardLeases`: the shards this node may write, kept by leases in a {@link LeaseStore}. It has
 * the shape of the runtime's `ShardOwnership` (`writerFor`, `ownedShards`) without importing it.
 *
 * Told which shards it should own ({@link ShardLeases.want}), it acquires them (retrying while
 * another node still holds one, until that node releases it or its lease expires), renews them
 * every `renewEveryMs`, and gives them up on {@link ShardLeases.release}. Acquisitions and
 * renewals go to the store in one call for all the shards concerned, each judged on its own.
 *
 * **Fencing by local deadline.** A lease is valid locally until `sentAt + ttl − safetyMargin`,
 * where `sentAt` is the monotonic time at which the acquire or the last successful renew was
 * *sent*. The store applied that request no earlier than `sentAt`, so its own expiry is at least
 * `sentAt + ttl`: the local deadline always falls before any other node can get the lease. The
 * margin absorbs clock-rate differences between this host and the store. {@link writerFor}
 * checks the deadline on every call, with no store round trip, so a process that was paused
 * (SIGSTOP, GC, swap) past its deadline refuses to write the moment it resumes, before any timer runs.
 *
 * Invariants: a shard is owned only between a `gained` and a `lost` event; every gain carries a
 * new epoch; an owned shard's deadline only moves forward, and only on a successful renew.
 */

import { type Clock, monotonicClock, type TimerHandle } from "../clock.ts";
import { LeaseLost, type LossReason } from "./errors.ts";
import type { LeaseGrant, LeaseStore } from "./lease-store.ts";

export type { LossReason } from "./errors.ts";

/** A change in what this node owns. Events are delivered in order, asynchronously (never inside a call). */
export type LeaseEvent =
  | { readonly type: "gained"; readonly shard: number; readonly epoch: number }
  | {
      readonly type: "lost";
      readonly shard: number;
      readonly epoch: number;
      readonly reason: LossReason;
      /** With `taken`: who holds it now. */
      readonly by?: { readonly node: string; readonly epoch: number };
    };

/** The writer of a shard's events: this node, with the lease epoch. */
export interface ShardWriter {
  readonly node: string;
  readonly epoch: number;
}

/** Default lease TTL. */
export const DEFAULT_LEASE_TTL_MS = 6000;

/** Options of {@link ShardLeases}. */
export interface ShardLeasesOptions {
  readonly store: LeaseStore;
  /** This node's id (the lease holder name). */
  readonly nodeId: string;
  /** Lease TTL, ms (default {@link DEFAULT_LEASE_TTL_MS}). */
  readonly ttlMs?: number;
  /** Renewal period, ms (default ttl/3). */
  readonly renewEveryMs?: number;
  /** Period of acquisition attempts for wanted shards held elsewhere, ms (default ttl/6). */
  readonly retryEveryMs?: number;
  /** Taken off every local deadline, ms (default ttl/10). `renewEveryMs + safetyMarginMs` must be below the TTL. */
  readonly safetyMarginMs?: number;
  /** Monotonic clock and timers (default `performance.now()`). */
  readonly clock?: Clock;
  /** Told of store failures and listener exceptions (ownership is unaffected until deadlines pass). */
  readonly onError?: (error: unknown) => void;
  /** Told of every renewal attempt: `renewed`, `rejected` (the lease is gone) or `failed` (store error). Metrics. */
  readonly onRenew?: (outcome: "renewed" | "rejected" | "failed") => void;
}

interface Held {
  readonly shard: number;
  readonly writer: ShardWriter;
  /** Local monotonic deadline: the lease may be used strictly before it. */
  validUntil: number;
  timer: TimerHandle | undefined;
  renewing: boolean;
}

/**
 * The leases of one node. Construction throws `RangeError` on inconsistent timings. After
 * {@link close}, {@link writerFor} always throws and {@link want} is refused.
 */
export class ShardLeases {
  readonly nodeId: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  readonly retryEveryMs: number;
  readonly safetyMarginMs: number;
  readonly #store: LeaseStore;
  readonly #clock: Clock;
  readonly #onError: (error: unknown) => void;
  readonly #onRenew: ShardLeasesOptions["onRenew"];
  readonly #listeners = new Set<(event: LeaseEvent) => void>();
  readonly #wanted = new Set<number>();
  readonly #held = new Map<number, Held>();
  readonly #acquiring = new Set<number>();
  /** How each shard not owned now was last lost (for {@link LeaseLost}); cleared on gain. */
  readonly #lastLoss = new Map<number, LossReason>();
  readonly #pending: LeaseEvent[] = [];
  #renewTimer: TimerHandle | undefined;
  #retryTimer: TimerHandle | undefined;
  #closed = false;

  constructor(options: ShardLeasesOptions) {
    const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    const renewEveryMs = options.renewEveryMs ?? ttlMs / 3;
    const retryEveryMs = options.retryEveryMs ?? ttlMs / 6;
    const safetyMarginMs = options.safetyMarginMs ?? ttlMs / 10;
    if (options.nodeId.length === 0) throw new RangeError("node id must not be empty");
    if (!(ttlMs > 0 && renewEveryMs > 0 && retryEveryMs > 0 && safetyMarginMs >= 0)) {
      throw new RangeError("lease timings must be positive");
    }
    if (!(renewEveryMs + safetyMarginMs < ttlMs)) {
      throw new RangeError(
        `renewEveryMs (${renewEveryMs}) + safetyMarginMs (${safetyMarginMs}) must be below ttlMs (${ttlMs})`,
      );
    }
    this.nodeId = options.nodeId;
    this.ttlMs = ttlMs;
    this.renewEveryMs = renewEveryMs;
    this.retryEveryMs = retryEveryMs;
    this.safetyMarginMs = safetyMarginMs;
    this.#store = options.store;
    this.#clock = options.clock ?? monotonicClock;
    this.#onError = options.onError ?? (() => {});
    this.#onRenew = options.onRenew;
  }

  /**
   * The writer for `shard`: this node and the lease epoch. Throws {@link LeaseLost} when the shard
   * is not owned, its local deadline has passed (then it is lost with reason `expired` at once), or
   * the manager is closed. Never touches the store.
   */
  writerFor(shard: number): ShardWriter {
    const held = this.#held.get(shard);
    if (!held)
      throw new LeaseLost(shard, this.#closed ? "closed" : (this.#lastLoss.get(shard) ?? "not-owned"));
    if (this.#clock.now() >= held.validUntil) {
      this.#lose(held, "expired");
      throw new LeaseLost(shard, "expired");
    }
    return held.writer;
  }

  /** The shards owned now (deadline not passed), ascending. Never touches the store. */
  ownedShards(): readonly number[] {
    const now = this.#clock.now();
    for (const held of [...this.#held.values()]) if (now >= held.validUntil) this.#lose(held, "expired");
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /** Whether this node is asked to own `shard` (a shard owned but not wanted is being handed over). */
  wants(shard: number): boolean {
    return this.#wanted.has(shard);
  }

  /** The shards this node is asked to own (whether or not it owns them yet), ascending. */
  wantedShards(): readonly number[] {
    return [...this.#wanted].sort((a, b) => a - b);
  }

  /**
   * Sets the shards this node should own, and tries at once to acquire those it does not hold
   * (call it again to retry at once, e.g. when another node announces a release). Shards owned but
   * no longer wanted stay owned and renewed until {@link release} hands them over, so the node can
   * drain them first. Throws `Error` after {@link close}, `RangeError` for an invalid shard.
   */
  want(shards: Iterable<number>): void {
    if (this.#closed) throw new Error("shard leases are closed");
    const next = [...shards];
    for (const shard of next) {
      if (!Number.isInteger(shard) || shard < 0) throw new RangeError(`invalid shard ${shard}`);
    }
    this.#wanted.clear();
    for (const shard of next) this.#wanted.add(shard);
    this.#retryNow();
  }

  /**
   * Gives up `shards` for good (until wanted again): they stop being owned at once (a `lost`
   * event with reason `released`) and their leases are released in the store so the next owner
   * can take them without waiting for expiry. Resolves when the store has answered; a store
   * failure is reported to `onError` (the leases then expire by themselves).
   */
  async release(shards: Iterable<number>): Promise<void> {
    const releases: Promise<void>[] = [];
    for (const shard of shards) {
      this.#wanted.delete(shard);
      const held = this.#held.get(shard);
      if (!held) continue;
      this.#lose(held, "released");
      releases.push(this.#releaseInStore(shard, held.writer.epoch));
    }
    await Promise.all(releases);
  }

  /** Subscribes to gains and losses; returns a function that unsubscribes. Listener exceptions go to `onError`. */
  onChange(listener: (event: LeaseEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops all timers and, by default, releases every owned shard (graceful shutdown). With
   * `{ release: false }` the shards are dropped locally (reason `closed`) and their leases left to
   * expire in the store, as after a crash. Idempotent; never fails (store errors go to `onError`).
   */
  async close(options: { readonly release?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wanted.clear();
    this.#renewTimer?.cancel();
    this.#retryTimer?.cancel();
    this.#renewTimer = this.#retryTimer = undefined;
    const held = [...this.#held.values()];
    if (options.release ?? true) {
      await this.release(held.map((h) => h.shard));
    } else {
      for (const h of held) this.#lose(h, "closed");
    }
  }

  // --- acquisition ---------------------------------------------------------------------------

  #retryNow(): void {
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    const shards = [...this.#wanted].filter((shard) => !this.#held.has(shard) && !this.#acquiring.has(shard));
    if (shards.length > 0) void this.#acquireAll(shards);
    this.#armRetry();
  }

  #armRetry(): void {
    if (this.#closed || this.#retryTimer) return;
    if (![...this.#wanted].some((shard) => !this.#held.has(shard))) return;
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#retryNow();
    }, this.retryEveryMs);
  }

  /** Asks for `shards` in one store call; takes each grant that is still of use. */
  async #acquireAll(shards: readonly number[]): Promise<void> {
    for (const shard of shards) this.#acquiring.add(shard);
    const sentAt = this.#clock.now();
    let grants: (LeaseGrant | undefined)[];
    try {
      grants = await this.#store.acquire(this.nodeId, shards, this.ttlMs);
    } catch (error) {
      this.#onError(error); // retried on the next attempt
      return;
    } finally {
      for (const shard of shards) this.#acquiring.delete(shard);
    }
    shards.forEach((shard, i) => {
      const epoch = grants[i]?.epoch;
      // Held by another node: the retry timer tries again.
      if (epoch !== undefined) this.#granted(shard, epoch, sentAt);
    });
  }

  #granted(shard: number, epoch: number, sentAt: number): void {
    const validUntil = sentAt + this.ttlMs - this.safetyMarginMs;
    if (
      this.#closed ||
      !this.#wanted.has(shard) ||
      this.#held.has(shard) ||
      this.#clock.now() >= validUntil
    ) {
      // Unwanted by now, or answered too late to be of use: hand it back.
      void this.#releaseInStore(shard, epoch);
      this.#armRetry();
      return;
    }
    const held: Held = {
      shard,
      writer: Object.freeze({ node: this.nodeId, epoch }),
      validUntil,
      timer: undefined,
      renewing: false,
    };
    this.#held.set(shard, held);
    this.#lastLoss.delete(shard);
    this.#armExpiry(held);
    this.#armRenew();
    this.#emit({ type: "gained", shard, epoch });
  }

  // --- renewal ---------------------------------------------------------------------------------

  #armRenew(): void {
    if (this.#closed || this.#renewTimer || this.#held.size === 0) return;
    this.#renewTimer = this.#clock.setTimeout(() => {
      this.#renewTimer = undefined;
      void this.#renewAll();
      this.#armRenew();
    }, this.renewEveryMs);
  }

  /**
   * Renews every held lease not being renewed already, in one store call: one round trip per
   * period however many shards the node owns, and one answer (or one failure) for them all.
   */
  async #renewAll(): Promise<void> {
    const batch = [...this.#held.values()].filter((held) => !held.renewing);
    if (batch.length === 0) return;
    for (const held of batch) held.renewing = true;
    const sentAt = this.#clock.now();
    let renewed: boolean[];
    try {
      renewed = await this.#store.renew(
        this.nodeId,
        batch.map((held) => ({ shard: held.shard, epoch: held.writer.epoch })),
        this.ttlMs,
      );
    } catch (error) {
      for (let i = 0; i < batch.length; i++) this.#onRenew?.("failed");
      this.#onError(error); // each lease is kept until its local deadline; the next tick tries again
      return;
    } finally {
      for (const held of batch) held.renewing = false;
    }
    batch.forEach((held, i) => void this.#renewed(held, sentAt, renewed[i] === true));
  }

  /** Takes in the store's answer to one lease's renewal, sent at `sentAt`. */
  async #renewed(held: Held, sentAt: number, renewed: boolean): Promise<void> {
    this.#onRenew?.(renewed ? "renewed" : "rejected");
    if (this.#held.get(held.shard) !== held) return; // lost or released meanwhile
    if (renewed) {
      // The store still had this very lease when it ran the renew, so ownership was continuous.
      held.validUntil = Math.max(held.validUntil, sentAt + this.ttlMs - this.safetyMarginMs);
      this.#armExpiry(held);
      return;
    }
    // Refuse writes at once; the event follows once classified. Until then the shard counts as
    // being acquired, so no new gain can be reported before this loss.
    const { shard, writer } = held;
    this.#held.delete(shard);
    this.#lastLoss.set(shard, "renew-rejected");
    held.timer?.cancel();
    this.#acquiring.add(shard);
    let by: { node: string; epoch: number } | undefined;
    try {
      const current = await this.#store.holder(shard);
      if (current && current.node !== this.nodeId) by = { node: current.node, epoch: current.epoch };
    } catch (error) {
      this.#onError(error);
    }
    this.#acquiring.delete(shard);
    if (by) {
      this.#lastLoss.set(shard, "taken");
      this.#emit({ type: "lost", shard, epoch: writer.epoch, reason: "taken", by });
    } else {
      this.#emit({ type: "lost", shard, epoch: writer.epoch, reason: "renew-rejected" });
    }
    this.#armRetry();
  }

  // --- loss ----------------------------------------------------------------------------------

  #armExpiry(held: Held): void {
    held.timer?.cancel();
    held.timer = this.#clock.setTimeout(
      () => {
        held.timer = undefined;
        if (this.#held.get(held.shard) !== held) return;
        if (this.#clock.now() >= held.validUntil) this.#lose(held, "expired");
        else this.#armExpiry(held);
      },
      Math.max(0, held.validUntil - this.#clock.now()),
    );
  }

  /** Stops owning `held` now and reports why; a still-wanted shard is then re-acquired (new epoch). */
  #lose(held: Held, reason: Exclude<LossReason, "taken">): void {
    if (this.#held.get(held.shard) !== held) return;
    this.#held.delete(held.shard);
    this.#lastLoss.set(held.shard, reason);
    held.timer?.cancel();
    held.timer = undefined;
    this.#emit({ type: "lost", shard: held.shard, epoch: held.writer.epoch, reason });
    this.#armRetry();
  }

  async #releaseInStore(shard: number, epoch: number): Promise<void> {
    try {
      await this.#store.release(shard, this.nodeId, epoch);
    } catch (error) {
      this.#onError(error);
    }
  }

  #emit(event: LeaseEvent): void {
    this.#pending.push(event);
    if (this.#pending.length > 1) return; // a flush is already scheduled
    queueMicrotask(() => {
      // Events raised by listeners are appended and delivered in the same loop, in order.
      for (let i = 0; i < this.#pending.length; i++) {
        const next = this.#pending[i]!;
        for (const listener of [...this.#listeners]) {
          try {
            listener(next);
          } catch (error) {
            this.#onError(error);
          }
        }
      }
      this.#pending.length = 0;
    });
  }
}
