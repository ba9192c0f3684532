/**
 * Shard leases in memory, for the in-process harness and unit tests: the same semantics as
 * {@link RedisLeaseStore} (exclusive, expiring by an injectable clock, growing epochs), plus
 * switches to simulate an outage and a restart that loses every lease.
 */

import { type Clock, monotonicClock } from "../clock.ts";
import {
  checkLeaseArgs,
  checkShardList,
  type HeldLease,
  type LeaseGrant,
  type LeaseHolder,
  type LeaseStore,
} from "./lease-store.ts";

/** Thrown by a {@link MemoryLeaseStore} made unreachable with `available = false`. */
export class LeaseStoreUnavailable extends Error {
  readonly code = "STORE_UNAVAILABLE";
  constructor() {
    super("the in-memory lease store is unavailable (simulated outage)");
    this.name = "LeaseStoreUnavailable";
  }
}

interface Lease {
  readonly node: string;
  readonly epoch: number;
  expiresAt: number;
}

/** Leases in a map; expiry by `clock.now()` (the store's clock). Epochs are 1, 2, 3... per shard. */
export class MemoryLeaseStore implements LeaseStore {
  /** When false, every operation rejects with {@link LeaseStoreUnavailable}. */
  available = true;
  readonly #clock: Pick<Clock, "now">;
  readonly #leases = new Map<number, Lease>();
  readonly #epochs = new Map<number, number>();

  constructor(clock: Pick<Clock, "now"> = monotonicClock) {
    this.#clock = clock;
  }

  /** Drops every lease, as a store restarted without persistence. Epochs keep growing (as Redis's clock floor ensures). */
  flush(): void {
    this.#leases.clear();
  }

  async acquire(node: string, shards: readonly number[], ttlMs: number): Promise<(LeaseGrant | undefined)[]> {
    checkShardList(shards, ttlMs);
    this.#check();
    return shards.map((shard) => {
      const current = this.#live(shard);
      if (current && current.node !== node) return undefined;
      const epoch = (this.#epochs.get(shard) ?? 0) + 1;
      this.#epochs.set(shard, epoch);
      this.#leases.set(shard, { node, epoch, expiresAt: this.#clock.now() + ttlMs });
      return { epoch };
    });
  }

  async renew(node: string, leases: readonly HeldLease[], ttlMs: number): Promise<boolean[]> {
    for (const { shard } of leases) checkLeaseArgs(shard, ttlMs);
    this.#check();
    return leases.map(({ shard, epoch }) => {
      const current = this.#live(shard);
      if (!current || current.node !== node || current.epoch !== epoch) return false;
      current.expiresAt = this.#clock.now() + ttlMs;
      return true;
    });
  }

  async release(shard: number, node: string, epoch: number): Promise<boolean> {
    checkLeaseArgs(shard);
    this.#check();
    const current = this.#live(shard);
    if (!current || current.node !== node || current.epoch !== epoch) return false;
    this.#leases.delete(shard);
    return true;
  }

  async holder(shard: number): Promise<LeaseHolder | undefined> {
    checkLeaseArgs(shard);
    this.#check();
    const current = this.#live(shard);
    return current && this.#describe(current);
  }

  async holders(): Promise<ReadonlyMap<number, LeaseHolder>> {
    this.#check();
    const all = new Map<number, LeaseHolder>();
    for (const shard of [...this.#leases.keys()].sort((a, b) => a - b)) {
      const current = this.#live(shard);
      if (current) all.set(shard, this.#describe(current));
    }
    return all;
  }

  #check(): void {
    if (!this.available) throw new LeaseStoreUnavailable();
  }

  #live(shard: number): Lease | undefined {
    const lease = this.#leases.get(shard);
    if (lease && lease.expiresAt <= this.#clock.now()) {
      this.#leases.delete(shard);
      return undefined;
    }
    return lease;
  }

  #describe(lease: Lease): LeaseHolder {
    return { node: lease.node, epoch: lease.epoch, expiresInMs: lease.expiresAt - this.#clock.now() };
  }
}
