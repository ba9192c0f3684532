/**
 * `LeaseStore`: exclusive, expiring leases on shards, with fencing epochs. A node may write a
 * shard only while it holds the shard's lease; every grant carries an epoch greater than every
 * epoch granted before for that shard, so a late write by an old holder is recognisable (events
 * carry their writer's epoch). Two implementations: {@link RedisLeaseStore} and {@link MemoryLeaseStore}.
 *
 * The store only answers questions; {@link ShardLeases} decides when to acquire, renew and give up.
 */

/** A granted lease: the epoch to stamp on everything written under it. */
export interface LeaseGrant {
  readonly epoch: number;
}

/** One of a node's leases: the shard and the epoch it was granted with. */
export interface HeldLease {
  readonly shard: number;
  readonly epoch: number;
}

/** Who holds a shard's lease, and for how much longer by the store's clock. */
export interface LeaseHolder {
  readonly node: string;
  readonly epoch: number;
  readonly expiresInMs: number;
}

/**
 * Shard leases of one cluster. Every operation is atomic in the store; every method rejects
 * when the store cannot be reached (then nothing is known about whether it took effect, except
 * that a lease never outlives its TTL).
 */
export interface LeaseStore {
  /**
   * Grants `node` the lease on each of `shards` (each at most once) for `ttlMs` with a new epoch,
   * greater than every epoch this store ever granted for that shard (even after losing its data:
   * see the implementation's clock assumption), all in one round trip: resolves one answer per
   * shard, in order, `undefined` where another node holds it. A node that already holds a shard
   * gets a fresh grant with a new epoch (its old epoch is then fenced off).
   */
  acquire(node: string, shards: readonly number[], ttlMs: number): Promise<(LeaseGrant | undefined)[]>;
  /**
   * Extends each of `node`'s `leases` to `ttlMs` from now, all in one round trip: resolves one
   * answer per lease, in order, false where that lease is gone (expired, released or replaced).
   * Each lease is judged on its own (one gone does not stop the others being renewed).
   */
  renew(node: string, leases: readonly HeldLease[], ttlMs: number): Promise<boolean[]>;
  /** Ends `node`'s lease `epoch` on `shard` at once. Resolves false when that lease was not held (any more). */
  release(shard: number, node: string, epoch: number): Promise<boolean>;
  /** The current holder of `shard`, or undefined when nobody holds it. */
  holder(shard: number): Promise<LeaseHolder | undefined>;
  /** The holder of every shard that has one (for `doppel cluster`). */
  holders(): Promise<ReadonlyMap<number, LeaseHolder>>;
}

/** Throws `RangeError` unless `shard` is a non-negative integer and `ttlMs` a positive number. */
export function checkLeaseArgs(shard: number, ttlMs?: number): void {
  if (!Number.isInteger(shard) || shard < 0) throw new RangeError(`invalid shard ${shard}`);
  if (ttlMs !== undefined && !(ttlMs > 0)) throw new RangeError(`invalid lease ttl ${ttlMs} ms`);
}

/** Throws `RangeError` unless every one of `shards` is valid (see {@link checkLeaseArgs}) and none is there twice. */
export function checkShardList(shards: readonly number[], ttlMs: number): void {
  for (const shard of shards) checkLeaseArgs(shard, ttlMs);
  if (new Set(shards).size !== shards.length) throw new RangeError("a shard is asked for twice");
}
