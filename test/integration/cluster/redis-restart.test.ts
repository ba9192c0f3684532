/**
 * Redis (membership and leases) restarted under a running cluster, losing all its data: every
 * node loses its leases at their local deadline and stops writing; when Redis is back the nodes
 * rejoin and re-acquire the shards with new, larger epochs — each shard held by exactly one node,
 * no twin active on two nodes — and writes continue, with every acknowledged report kept once.
 *
 * Restarts the script's own Redis (`scripts/infra/redis.sh down/up`), so it runs only when
 * DOPPEL_REDIS is unset or `redis://127.0.0.1:16379`.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import {
  DeviceLoad,
  epochs,
  eventually,
  expectEveryReportOnce,
  idsInShards,
  noRestartReason,
  ownershipSettled,
  redisDown,
  redisUp,
  runId,
  ServiceLoad,
  SHARDS,
  sleep,
  TestCluster,
  TYPE,
} from "./harness.ts";

if (noRestartReason) process.stdout.write(`[cluster] Redis restart test skipped: ${noRestartReason}\n`);

describe.skipIf(noRestartReason !== undefined)("Redis restarted under a running cluster", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  const members = ["r1", "r2", "r3"];

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("redis"));
    await cluster.start(...members);
  });
  afterAll(async () => {
    await redisUp().catch(() => undefined);
    await cluster?.close();
    await store?.close();
  });

  it("recovers ownership with new, larger epochs, never runs a twin on two nodes, and keeps writing", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const all = Array.from({ length: SHARDS }, (_, shard) => shard);
    const before = await cluster.settled(members);
    await ownershipSettled(cluster, members);
    const probes = [...idsInShards(`${tag}-probe`, all).values()].map((ids) => ids[0]!);
    const twins = Array.from({ length: 48 }, (_, i) => `${tag}-d${i}`);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    // Calls during the outage wait for an owner (the router retries) and may time out; they are
    // not what this test checks: afterwards every call must succeed again.
    const services = new ServiceLoad(
      members.map((id) => ({ node: cluster.node(id), ids: [`${tag}-svc-${id}`] })),
    );
    devices.start();
    services.start();
    let downFor = 0;
    let recovered = 0;
    try {
      await sleep(1500);
      const downAt = Date.now();
      await redisDown();
      // Every node stops writing: each lease is dropped at its local deadline.
      await eventually(
        async () => ((await cluster.probes()).every((p) => p.owned.length === 0) ? true : undefined),
        "every node to give up its leases",
        10_000,
      );
      downFor = Date.now() - downAt;
      // Operators asking meanwhile are told the cluster store is unreachable (not an internal error).
      await expect(cluster.node("r1").client.cluster()).rejects.toMatchObject({ code: "UNAVAILABLE" });
      await redisUp();
      const upAt = Date.now();
      const after = await cluster.settled(members, 30_000);
      recovered = Date.now() - upAt;
      const was = epochs(before);
      for (const [shard, epoch] of epochs(after).entries()) {
        expect(epoch, `shard ${shard}`).toBeGreaterThan(was[shard]!);
      }
      await ownershipSettled(cluster, members);
      // Writes go on: a command on a twin of every shard, through every node.
      await Promise.all(
        probes.map((id, i) =>
          cluster.node(members[i % 3]!).client.invoke({ type: TYPE, id }, "setTarget", { celsius: 23 }),
        ),
      );
      await sleep(1000);
    } finally {
      await services.stop();
      await devices.stop();
    }
    process.stdout.write(
      `[cluster] Redis down ${downFor} ms (until every lease was dropped); settled ${recovered} ms after it was back; ${services.errors.length} gRPC calls failed during the outage\n`,
    );
    await expectEveryReportOnce(cluster, store, devices, 60_000);
    // Reports kept flowing after the restart.
    expect(devices.count).toBeGreaterThan(0);
    await devices.close();
  });
});
