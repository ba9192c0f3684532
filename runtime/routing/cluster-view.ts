/**
 * The cluster status a coordinator reads (members, ring assignment, lease holders) as the plain
 * view `GetCluster` and `doppel cluster` show.
 */
import type { ClusterView } from "../core/cluster-view.ts";
import type { ClusterStatus } from "./coordinator.ts";

function countBy<T>(items: Iterable<T>, key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

export function clusterViewOf(status: ClusterStatus): ClusterView {
  const assigned = countBy(status.assignment, (node) => node);
  const owned = countBy(status.holders.values(), (holder) => holder.node);
  return {
    name: status.cluster,
    shardCount: status.shardCount,
    self: status.self,
    nodes: status.members.map((member) => ({
      id: member.nodeId,
      grpcAddress: typeof member.meta["grpc"] === "string" ? member.meta["grpc"] : "",
      startedAt: member.startedAt,
      lastHeartbeat: member.lastHeartbeat,
      residentTwins: typeof member.meta["twins"] === "number" ? member.meta["twins"] : 0,
      shardsOwned: owned.get(member.nodeId) ?? 0,
      shardsAssigned: assigned.get(member.nodeId) ?? 0,
    })),
    shards: Array.from({ length: status.shardCount }, (_, shard) => {
      const holder = status.holders.get(shard);
      return {
        shard,
        assignedTo: status.assignment[shard] ?? "",
        holder: holder?.node ?? "",
        epoch: holder?.epoch ?? 0,
        expiresInMs: holder?.expiresInMs ?? 0,
      };
    }),
  };
}
