import { afterEach, describe, expect, it } from "vitest";
import type { MemoryLeaseStore } from "../../cluster/leases/memory.ts";
import type { Catalog } from "../../runtime/engine/catalog.ts";
import type { ReminderService } from "../../runtime/engine/reminder-service.ts";
import { type ClusterParts, inProcessCluster, openClusterParts } from "../../runtime/node/cluster-parts.ts";
import { nodeConfigSchema } from "../../runtime/node/options.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { ClusterCoordinator, type ShardConsumers } from "../../runtime/routing/coordinator.ts";
import { capturedLogger } from "../support/captured-logger.ts";
import { eventually } from "../support/eventually.ts";

const SHARDS = 8;

/** Consumers whose set-up fails for the first `failures` calls of each shard. */
class FlakyConsumers implements ShardConsumers {
  readonly consumed = new Set<number>();
  readonly attempts = new Map<number, number>();
  constructor(private readonly failures: number) {}
  async ownShards(shards: readonly number[]): Promise<void> {
    for (const shard of shards) {
      const n = (this.attempts.get(shard) ?? 0) + 1;
      this.attempts.set(shard, n);
      if (n <= this.failures) throw new Error(`JetStream API timeout (shard ${shard}, attempt ${n})`);
      this.consumed.add(shard);
    }
  }
  readonly releases: number[][] = [];
  async releaseShards(shards: readonly number[]): Promise<void> {
    this.releases.push([...shards]);
    for (const shard of shards) this.consumed.delete(shard);
  }
}

describe("ClusterCoordinator", () => {
  let coordinator: ClusterCoordinator | undefined;
  let parts: ClusterParts | undefined;
  afterEach(async () => {
    await coordinator?.stop();
    await parts?.close();
  });

  async function start(
    consumers: ShardConsumers,
    logger = silentLogger(),
    drained: unknown[] = [],
    leaseTtlMs = 600,
  ): Promise<ClusterCoordinator> {
    const config = nodeConfigSchema.parse({ nodeId: "c1", store: { kind: "memory" }, shards: SHARDS });
    const shared = await inProcessCluster("coordinator-test", {
      heartbeatMs: 40,
      deadAfterMs: 250,
      leaseTtlMs,
    });
    parts = await openClusterParts(config, shared, "c1", silentLogger());
    if (!parts) throw new Error("no cluster parts");
    coordinator = new ClusterCoordinator({
      nodeId: "c1",
      shardCount: SHARDS,
      membership: parts.membership,
      leases: parts.leases,
      leaseStore: parts.leaseStore,
      catalog: { drain: async (which: unknown) => void drained.push(which) } as unknown as Catalog,
      reminders: { poll: async () => {} } as unknown as ReminderService,
      consumers,
      logger,
      meta: () => ({}),
      metaEveryMs: 1000,
      leaveGraceMs: 0,
    });
    await coordinator.start();
    return coordinator;
  }

  it("retries a consumer set-up that failed, so every held shard ends up consumed", async () => {
    const consumers = new FlakyConsumers(2);
    const c = await start(consumers);
    await eventually(() => consumers.consumed.size === SHARDS, "consumers started");
    for (let shard = 0; shard < SHARDS; shard++) {
      expect(c.owns(shard)).toBe(true);
      expect(consumers.attempts.get(shard)).toBe(3);
    }
  });

  it("stops retrying once it leaves: a released shard is not consumed again", async () => {
    const consumers = new FlakyConsumers(Number.POSITIVE_INFINITY);
    await start(consumers);
    await eventually(() => consumers.attempts.size === SHARDS, "every shard attempted");
    await coordinator!.stop();
    const attempts = [...consumers.attempts.values()].reduce((a, b) => a + b, 0);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect([...consumers.attempts.values()].reduce((a, b) => a + b, 0)).toBe(attempts);
    expect(consumers.consumed.size).toBe(0);
  });

  it("takes a burst of lost leases together: one release, one drain, one warning per reason", async () => {
    const consumers = new FlakyConsumers(0);
    const { logger, lines } = capturedLogger("warn");
    const drained: unknown[] = [];
    // A TTL long enough that no lease expires by its local deadline first on a busy machine.
    const c = await start(consumers, logger, drained, 3000);
    await eventually(() => consumers.consumed.size === SHARDS, "consumers started");
    const store = parts!.leaseStore as MemoryLeaseStore;
    store.flush(); // the store restarted without its data: every renewal of the next call is rejected
    await eventually(() => lines.some((l) => l.msg === "shard leases lost"), "losses logged");
    const lost = lines.filter((l) => l.msg === "shard leases lost");
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({
      reason: "renew-rejected",
      count: SHARDS,
      shards: Array.from({ length: SHARDS }, (_, i) => i),
    });
    expect(consumers.releases).toEqual([Array.from({ length: SHARDS }, (_, i) => i)]);
    expect(drained).toHaveLength(1);
    // ...and the shards are taken again (new epochs).
    await eventually(() => consumers.consumed.size === SHARDS && c.owns(0), "shards re-acquired");
  });

  it("stops consuming a shard whose lease is released, even when its hand-over did not stop it", async () => {
    const consumers = new FlakyConsumers(0);
    const { logger, lines } = capturedLogger("warn");
    await start(consumers, logger, [], 3000);
    await eventually(() => consumers.consumed.size === SHARDS, "consumers started");
    // A lease released while its consumer still runs (a gain that raced with the shard's hand-over).
    await parts!.leases.release([3]);
    await eventually(() => !consumers.consumed.has(3), "shard 3's consumer stopped");
    expect(consumers.releases).toEqual([[3]]);
    expect(lines.filter((l) => l.msg === "shard leases lost")).toEqual([]); // a release is not a loss
  });
});
