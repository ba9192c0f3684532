/**
 * Rebalancing: which shards change owner between two placements, and between whom.
 */

import type { NodeId, ShardAssignment } from "./hash-ring.ts";

/** One shard that changes owner: `from` hands it to `to`. */
export interface ShardMove {
  readonly shard: number;
  readonly from: NodeId;
  readonly to: NodeId;
}

/** All the shards that go from one node to another, ascending. */
export interface ShardRoute {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly shards: readonly number[];
}

/**
 * The shards whose owner differs between `before` and `after` (two assignments of the same shard
 * count, e.g. from {@link HashRing.assignment} before and after a membership change), ascending by
 * shard. Throws `RangeError` when the two cover different shard counts.
 */
export function diff(before: ShardAssignment, after: ShardAssignment): ShardMove[] {
  if (before.length !== after.length) {
    throw new RangeError(`cannot compare assignments of ${before.length} and ${after.length} shards`);
  }
  const moves: ShardMove[] = [];
  for (let shard = 0; shard < before.length; shard++) {
    const from = before[shard]!;
    const to = after[shard]!;
    if (from !== to) moves.push({ shard, from, to });
  }
  return moves;
}

/** The moves grouped by `(from, to)`, sorted by `from` then `to`; each route's shards ascending. */
export function routes(moves: readonly ShardMove[]): ShardRoute[] {
  const byRoute = new Map<string, { from: NodeId; to: NodeId; shards: number[] }>();
  for (const move of moves) {
    // JSON of the pair: unambiguous whatever characters the node ids contain.
    const key = JSON.stringify([move.from, move.to]);
    let route = byRoute.get(key);
    if (!route) byRoute.set(key, (route = { from: move.from, to: move.to, shards: [] }));
    route.shards.push(move.shard);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return [...byRoute.values()]
    .map((r) => ({ ...r, shards: r.shards.sort((a, b) => a - b) }))
    .sort((a, b) => cmp(a.from, b.from) || cmp(a.to, b.to));
}
