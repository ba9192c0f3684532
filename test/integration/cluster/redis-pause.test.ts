/**
 * Redis (membership and leases) paused under a running cluster (SIGSTOP: its connections stay
 * open and nothing is answered), then resumed: every node's commands fail by their own deadline
 * instead of waiting on the silent server, so each node drops its leases at their local deadline
 * and operators asking are told the cluster store is unreachable; once Redis answers again the
 * nodes re-acquire the shards with new, larger epochs and writes continue, every acknowledged
 * report kept once.
 *
 * Pauses the script's own Redis, so it runs only when DOPPEL_REDIS is unset or
 * `redis://127.0.0.1:16379`.
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
  redisPause,
  redisResume,
  runId,
  ServiceLoad,
  SHARDS,
  sleep,
  TestCluster,
  TYPE,
} from "./harness.ts";

if (noRestartReason) process.stdout.write(`[cluster] Redis pause test skipped: ${noRestartReason}\n`);

describe.skipIf(noRestartReason !== undefined)("Redis paused under a running cluster", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  const members = ["q1", "q2", "q3"];

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("redis-pause"));
    await cluster.start(...members);
  });
  afterAll(async () => {
    await redisResume().catch(() => undefined);
    await cluster?.close();
    await store?.close();
  });

  it("gives up every lease while Redis is silent, answers operators with UNAVAILABLE, and recovers with larger epochs when it answers again", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const all = Array.from({ length: SHARDS }, (_, shard) => shard);
    const before = await cluster.settled(members);
    await ownershipSettled(cluster, members);
    const probes = [...idsInShards(`${tag}-probe`, all).values()].map((ids) => ids[0]!);
    const twins = Array.from({ length: 48 }, (_, i) => `${tag}-d${i}`);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    const services = new ServiceLoad(
      members.map((id) => ({ node: cluster.node(id), ids: [`${tag}-svc-${id}`] })),
    );
    devices.start();
    services.start();
    let pausedFor = 0;
    let recovered = 0;
    try {
      await sleep(1500);
      const pausedAt = Date.now();
      await redisPause();
      try {
        await eventually(
          async () => ((await cluster.probes()).every((p) => p.owned.length === 0) ? true : undefined),
          "every node to give up its leases",
          10_000,
        );
        pausedFor = Date.now() - pausedAt;
        // The status call reads the lease holders from Redis: refused by the connection's own
        // deadline, not left waiting on a server that never answers.
        await expect(cluster.node("q1").client.cluster()).rejects.toMatchObject({ code: "UNAVAILABLE" });
      } finally {
        await redisResume();
      }
      const resumedAt = Date.now();
      const after = await cluster.settled(members, 30_000);
      recovered = Date.now() - resumedAt;
      const was = epochs(before);
      for (const [shard, epoch] of epochs(after).entries()) {
        expect(epoch, `shard ${shard}`).toBeGreaterThan(was[shard]!);
      }
      await ownershipSettled(cluster, members);
      await Promise.all(
        probes.map((id, i) =>
          cluster.node(members[i % 3]!).client.invoke({ type: TYPE, id }, "setTarget", { celsius: 22 }),
        ),
      );
      await sleep(1000);
    } finally {
      await services.stop();
      await devices.stop();
    }
    process.stdout.write(
      `[cluster] Redis paused ${pausedFor} ms (until every lease was dropped); settled ${recovered} ms after it resumed; ${services.errors.length} gRPC calls failed meanwhile\n`,
    );
    await expectEveryReportOnce(cluster, store, devices, 60_000);
    expect(devices.count).toBeGreaterThan(0);
    await devices.close();
  });
});
