/**
 * A `LeaseStore` wrapper for tests: counts calls, and can make the store unreachable or hold
 * replies back, for one node only (a partition) — the store behind it stays up for others.
 */

import { performance } from "node:perf_hooks";
import type { HeldLease, LeaseGrant, LeaseHolder, LeaseStore } from "../../cluster/leases/lease-store.ts";

export class FaultyLeaseStore implements LeaseStore {
  /** Calls made through this wrapper, by method. */
  readonly calls = { acquire: 0, renew: 0, release: 0, holder: 0, holders: 0 };
  /** When true, every call rejects (this node cannot reach the store). */
  down = false;
  /** Per shard, when (`performance.now()`) the last acquire or renew that succeeded was sent. */
  readonly lastGrantSent = new Map<number, number>();
  /** When set, replies wait for this promise before being delivered (a slow network). */
  delay: Promise<void> | undefined;

  constructor(readonly inner: LeaseStore) {}

  get totalCalls(): number {
    return Object.values(this.calls).reduce((a, b) => a + b, 0);
  }

  acquire(node: string, shards: readonly number[], ttlMs: number): Promise<(LeaseGrant | undefined)[]> {
    this.calls.acquire++;
    const sentAt = performance.now();
    return this.#through(async () => {
      const grants = await this.inner.acquire(node, shards, ttlMs);
      shards.forEach((shard, i) => {
        if (grants[i]) this.lastGrantSent.set(shard, sentAt);
      });
      return grants;
    });
  }
  renew(node: string, leases: readonly HeldLease[], ttlMs: number): Promise<boolean[]> {
    this.calls.renew++;
    const sentAt = performance.now();
    return this.#through(async () => {
      const renewed = await this.inner.renew(node, leases, ttlMs);
      leases.forEach(({ shard }, i) => {
        if (renewed[i]) this.lastGrantSent.set(shard, sentAt);
      });
      return renewed;
    });
  }
  release(shard: number, node: string, epoch: number): Promise<boolean> {
    this.calls.release++;
    return this.#through(() => this.inner.release(shard, node, epoch));
  }
  holder(shard: number): Promise<LeaseHolder | undefined> {
    this.calls.holder++;
    return this.#through(() => this.inner.holder(shard));
  }
  holders(): Promise<ReadonlyMap<number, LeaseHolder>> {
    this.calls.holders++;
    return this.#through(() => this.inner.holders());
  }

  async #through<T>(call: () => Promise<T>): Promise<T> {
    if (this.down) throw new Error("lease store unreachable (test)");
    const result = await call(); // the store applies the request at once...
    if (this.delay) await this.delay; // ...the reply may arrive late
    return result;
  }
}
