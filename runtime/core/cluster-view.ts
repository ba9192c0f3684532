/**
 * The cluster as one node sees it, in plain data: what `GetCluster` and `doppel cluster` show.
 */

export interface ClusterNodeView {
  readonly id: string;
  readonly grpcAddress: string;
  readonly startedAt: number;
  readonly lastHeartbeat: number;
  readonly residentTwins: number;
  readonly shardsOwned: number;
  readonly shardsAssigned: number;
}

export interface ShardView {
  readonly shard: number;
  readonly assignedTo: string;
  /** "" when no node holds the lease (the shard is moving). */
  readonly holder: string;
  readonly epoch: number;
  readonly expiresInMs: number;
}

export interface ClusterView {
  /** "" for a single node without a cluster. */
  readonly name: string;
  readonly shardCount: number;
  readonly self: string;
  readonly nodes: readonly ClusterNodeView[];
  readonly shards: readonly ShardView[];
}

/** The view of a single node: it is the whole cluster and holds every shard at its one epoch. */
export function soloClusterView(options: {
  nodeId: string;
  shardCount: number;
  epoch: number;
  grpcAddress: string;
  startedAt: number;
  residentTwins: number;
  now: number;
}): ClusterView {
  return {
    name: "",
    shardCount: options.shardCount,
    self: options.nodeId,
    nodes: [
      {
        id: options.nodeId,
        grpcAddress: options.grpcAddress,
        startedAt: options.startedAt,
        lastHeartbeat: options.now,
        residentTwins: options.residentTwins,
        shardsOwned: options.shardCount,
        shardsAssigned: options.shardCount,
      },
    ],
    shards: Array.from({ length: options.shardCount }, (_, shard) => ({
      shard,
      assignedTo: options.nodeId,
      holder: options.nodeId,
      epoch: options.epoch,
      expiresInMs: -1,
    })),
  };
}
