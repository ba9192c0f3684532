/**
 * Placement: which live node owns each shard, by consistent hashing with virtual nodes.
 *
 * Every member node puts `V` virtual nodes on a 32-bit ring, at `murmur3("<nodeId>#<i>")` for
 * `i = 0..V-1`. A shard sits at `murmur3("<shard>")` (its decimal number) and belongs to the first
 * virtual node clockwise from it (at or after its point, wrapping past 2^32 − 1 to 0). The ring
 * depends only on the *set* of member ids, so every node computes the same placement from the same
 * membership, whatever order it learnt the members in.
 *
 * Consequences (checked by property tests in `test/cluster/ring.test.ts`):
 * - a join moves shards only *to* the new node; a leave moves only the leaving node's shards;
 * - the number of shards a join moves is the new node's share, between
 *   {@link JOIN_MOVES_MIN} × S/(N+1) and {@link BALANCE_BOUND} × S/(N+1);
 * - balance: no node holds more than {@link BALANCE_BOUND} × S/N shards (S = 256, N ≤ 12).
 *
 * How the bound was chosen (`npx tsx test/cluster/measure-ring-balance.ts`; table in docs/cluster.md):
 * over 20 000 random member sets per N = 1..12 with S = 256 and V = 128, the busiest node held at
 * most 2.11 × S/N (at N = 12; p99 1.73×, median 1.36×). V = 256 gives the same worst case, V = 32
 * clearly worse (2.36×). More virtual nodes stop helping around V = 128 because the spread is
 * dominated by where the 256 shard points fall, not by the ring: each shard lands on a node almost
 * independently, so at N = 12 a node's share is roughly Binomial(256, 1/12) — mean 21.3, σ ≈ 4.4 —
 * and the busiest of 12 nodes sits 2–5 σ above the mean.
 */

import { murmur3 } from "./murmur3.ts";

/** Virtual nodes per member unless told otherwise (measured: see the module comment). */
export const DEFAULT_VIRTUAL_NODES = 128;

/**
 * With {@link DEFAULT_VIRTUAL_NODES}, S = 256 and 1..12 members, no member holds more than
 * `BALANCE_BOUND × S / N` shards (measured worst case 2.11 over 240 000 member sets; margin added).
 */
export const BALANCE_BOUND = 2.25;

/**
 * A join moves at least `JOIN_MOVES_MIN × S / (N + 1)` shards (to the new node), with the same
 * setting (measured minimum 0.20 at N = 12, i.e. 4 shards where 19.7 is the fair share).
 */
export const JOIN_MOVES_MIN = 0.15;

/** A node id as it appears on the ring: any non-empty string (the membership's node id). */
export type NodeId = string;

/** Owner of each shard: `assignment[shard]` is the node id that owns `shard`. */
export type ShardAssignment = readonly NodeId[];

/** Thrown when asking an empty ring for an owner: there is no live member to place a shard on. */
export class EmptyRingError extends Error {
  readonly code = "EMPTY_RING";
  constructor() {
    super("the ring has no members: no node can own a shard");
    this.name = "EmptyRingError";
  }
}

/** Options of a {@link HashRing}. */
export interface HashRingOptions {
  /** Virtual nodes per member (a positive integer); default {@link DEFAULT_VIRTUAL_NODES}. */
  readonly virtualNodes?: number;
}

/** The 32-bit ring point of a shard: the hash of its decimal number. */
export function shardPoint(shard: number): number {
  return murmur3(String(shard));
}

/**
 * An immutable consistent-hash ring over a set of member node ids.
 *
 * Construction fails (`RangeError`) on an empty node id or a non-positive `virtualNodes`;
 * duplicate ids count once. An empty member set is allowed; {@link ownerOf} then throws
 * {@link EmptyRingError} and {@link assignment} returns an empty array only for `shardCount` 0.
 */
export class HashRing {
  /** The members, sorted (deduplicated). */
  readonly members: readonly NodeId[];
  /** Virtual nodes per member. */
  readonly virtualNodes: number;
  /** Virtual node points, ascending; `#owners[i]` owns `#points[i]`. */
  readonly #points: Uint32Array;
  readonly #owners: readonly NodeId[];

  constructor(members: Iterable<NodeId>, options: HashRingOptions = {}) {
    const virtualNodes = options.virtualNodes ?? DEFAULT_VIRTUAL_NODES;
    if (!Number.isInteger(virtualNodes) || virtualNodes < 1) {
      throw new RangeError(`virtualNodes must be a positive integer, got ${virtualNodes}`);
    }
    const ids = [...new Set(members)].sort();
    for (const id of ids) if (id.length === 0) throw new RangeError("a ring member id must not be empty");
    const vnodes: { point: number; node: NodeId }[] = [];
    for (const node of ids) {
      for (let i = 0; i < virtualNodes; i++) vnodes.push({ point: murmur3(`${node}#${i}`), node });
    }
    // Ties (two virtual nodes on one point) go to the smaller node id: still order-independent,
    // and a join or leave can only change the owner of a point to or from the joining/leaving node.
    vnodes.sort((a, b) => a.point - b.point || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    this.members = ids;
    this.virtualNodes = virtualNodes;
    this.#points = Uint32Array.from(vnodes, (v) => v.point);
    this.#owners = vnodes.map((v) => v.node);
  }

  /** True when the ring has no members. */
  get empty(): boolean {
    return this.members.length === 0;
  }

  /**
   * The node that owns `shard` (a non-negative integer). Throws {@link EmptyRingError} when the
   * ring is empty and `RangeError` for a negative or fractional shard.
   */
  ownerOf(shard: number): NodeId {
    if (!Number.isInteger(shard) || shard < 0) throw new RangeError(`invalid shard ${shard}`);
    if (this.#owners.length === 0) throw new EmptyRingError();
    const point = shardPoint(shard);
    // First virtual node at or after `point` (binary search), wrapping to the first one.
    let lo = 0;
    let hi = this.#points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#points[mid]! < point) lo = mid + 1;
      else hi = mid;
    }
    return this.#owners[lo === this.#points.length ? 0 : lo]!;
  }

  /**
   * The owner of every shard `0..shardCount-1`. Throws {@link EmptyRingError} when the ring is
   * empty and `shardCount > 0`, `RangeError` for a negative or fractional count.
   */
  assignment(shardCount: number): ShardAssignment {
    if (!Number.isInteger(shardCount) || shardCount < 0) {
      throw new RangeError(`invalid shard count ${shardCount}`);
    }
    const owners: NodeId[] = new Array(shardCount);
    for (let shard = 0; shard < shardCount; shard++) owners[shard] = this.ownerOf(shard);
    return owners;
  }

  /** The shards `node` owns out of `0..shardCount-1`, ascending (empty for a non-member). */
  shardsOf(node: NodeId, shardCount: number): number[] {
    if (this.empty) return [];
    const shards: number[] = [];
    for (let shard = 0; shard < shardCount; shard++) if (this.ownerOf(shard) === node) shards.push(shard);
    return shards;
  }
}
