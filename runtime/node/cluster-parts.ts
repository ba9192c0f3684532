/**
 * What makes a node a cluster member: membership and shard leases, in Redis (`cluster` in the
 * configuration) or given in-process (the multi-node test harness passes shared in-memory ones).
 */

import type { LeaseStore } from "../../cluster/leases/lease-store.ts";
import { MemoryLeaseStore } from "../../cluster/leases/memory.ts";
import { ShardLeases } from "../../cluster/leases/shard-leases.ts";
import type { Membership } from "../../cluster/membership/membership.ts";
import { MemoryMembership, type MemoryMembershipRegistry } from "../../cluster/membership/memory.ts";
import { SystemClock } from "../core/clock.ts";
import { Unavailable } from "../core/errors.ts";
import { present } from "../core/present.ts";
import type { Logger } from "../observability/logger.ts";
import { RepeatedWarnings } from "../observability/repeated-warnings.ts";
import { readPem } from "../security/pem-files.ts";
import type { NodeConfig } from "./options.ts";

/** Shared in-process cluster infrastructure, for running several nodes in one process. */
export interface InProcessCluster {
  readonly name: string;
  readonly membership: MemoryMembershipRegistry;
  readonly leases: MemoryLeaseStore;
  readonly heartbeatMs?: number;
  readonly deadAfterMs?: number;
  readonly leaseTtlMs?: number;
}

/** A node's cluster parts. */
export interface ClusterParts {
  readonly name: string;
  readonly membership: Membership;
  readonly leaseStore: LeaseStore;
  readonly leases: ShardLeases;
  close(): Promise<void>;
}

/** Opens the cluster parts from the configuration or the in-process harness; `undefined` for a single node. */
export async function openClusterParts(
  config: NodeConfig,
  inProcess: InProcessCluster | undefined,
  nodeId: string,
  logger: Logger,
  onRenew?: (outcome: "renewed" | "rejected" | "failed") => void,
): Promise<ClusterParts | undefined> {
  // One line per kind of failure per 10 s, with the count held back (one per shard and attempt otherwise).
  const storeErrors = new RepeatedWarnings(logger, "cluster store error", SystemClock);
  const onError = (error: unknown) => storeErrors.warn(error);
  if (inProcess) {
    const leases = new ShardLeases({
      store: inProcess.leases,
      nodeId,
      ...present({ ttlMs: inProcess.leaseTtlMs }),
      onError,
      ...(onRenew ? { onRenew } : {}),
    });
    const membership = new MemoryMembership(inProcess.membership, {
      cluster: inProcess.name,
      shardCount: config.shards,
      ...present({ heartbeatMs: inProcess.heartbeatMs, deadAfterMs: inProcess.deadAfterMs }),
      onError,
    });
    return { name: inProcess.name, membership, leaseStore: inProcess.leases, leases, close: async () => {} };
  }
  const cluster = config.cluster;
  if (!cluster) return undefined;
  // The Redis client loads only for a cluster member.
  const [{ RedisConnection }, { RedisLeaseStore }, { RedisMembership }] = await Promise.all([
    import("../../cluster/membership/redis-connection.ts"),
    import("../../cluster/leases/redis.ts"),
    import("../../cluster/membership/redis.ts"),
  ]);
  const tls = cluster.redisTls && {
    ...present({
      ca: cluster.redisTls.ca === undefined ? undefined : readPem(cluster.redisTls.ca, "cluster.redisTls.ca"),
      cert:
        cluster.redisTls.cert === undefined
          ? undefined
          : readPem(cluster.redisTls.cert, "cluster.redisTls.cert"),
      key:
        cluster.redisTls.key === undefined
          ? undefined
          : readPem(cluster.redisTls.key, "cluster.redisTls.key"),
      serverName: cluster.redisTls.serverName,
    }),
  };
  let redis: Awaited<ReturnType<typeof RedisConnection.connect>>;
  try {
    redis = await RedisConnection.connect(cluster.redis, {
      onError,
      // A shard has at most one acquire or renew (and a release or holder read) in flight: room
      // for all of them, so only a Redis that stopped answering meets the bound.
      maxUnanswered: 4 * config.shards + 64,
      ...present({ tls }),
    });
  } catch (error) {
    throw new Unavailable(
      `cannot reach Redis at ${cluster.redis} for cluster "${cluster.name}": ${(error as Error).message}`,
    );
  }
  const leaseStore = new RedisLeaseStore(redis, cluster.name);
  const leases = new ShardLeases({
    store: leaseStore,
    nodeId,
    ttlMs: cluster.leaseTtl,
    onError,
    ...(onRenew ? { onRenew } : {}),
  });
  const membership = new RedisMembership({
    redis,
    cluster: cluster.name,
    shardCount: config.shards,
    heartbeatMs: cluster.heartbeat,
    deadAfterMs: cluster.deadAfter,
    onError,
  });
  return { name: cluster.name, membership, leaseStore, leases, close: () => redis.close() };
}

/** Shared in-process cluster infrastructure (membership registry and lease store) for a harness. */
export async function inProcessCluster(
  name: string,
  options: Partial<InProcessCluster> = {},
): Promise<InProcessCluster> {
  const { MemoryMembershipRegistry } = await import("../../cluster/membership/memory.ts");
  return {
    name,
    membership: options.membership ?? new MemoryMembershipRegistry(),
    leases: options.leases ?? new MemoryLeaseStore(),
    ...options,
  };
}
