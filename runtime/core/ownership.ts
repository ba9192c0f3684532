/**
 * Shard ownership as every layer sees it: which shards this node may write now, and the writer
 * identity (node, lease epoch) its events carry. A cluster member derives it from its shard
 * leases (runtime/routing/lease-ownership.ts); a node alone owns every shard.
 */
import type { Writer } from "./records.ts";

/** Which shards this node may write, and with which lease epoch. A single node owns them all at epoch 0. */
export interface ShardOwnership {
  /** The writer for events of `shard`; throws `Unavailable` when this node does not own it now. */
  writerFor(shard: number): Writer;
  /** Shards this node owns now (`"all"` on a single node). */
  ownedShards(): readonly number[] | "all";
}

/**
 * Ownership of a single node: every shard, at one epoch for the node's lifetime. The epoch is the
 * start time in microseconds, on the same scale as cluster lease epochs (Redis time in µs), so a
 * twin moved between a single node and a cluster never sees its writer epoch go backwards.
 */
export function singleNodeOwnership(nodeId: string, epoch: number = Date.now() * 1000): ShardOwnership {
  const writer: Writer = Object.freeze({ node: nodeId, epoch });
  return { writerFor: () => writer, ownedShards: () => "all" };
}
