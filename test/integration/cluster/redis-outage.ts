/**
 * The Redis outage scenario that `redis-restart.test.ts` and `redis-pause.test.ts` run with two
 * kinds of outage: three node processes under device and service load; Redis goes away (`cut`)
 * until every node has given up its leases, and `doppel cluster` meanwhile answers UNAVAILABLE;
 * Redis comes back (`restore`): the cluster settles with larger epochs on every shard, a command on
 * a twin of every shard succeeds through every node, and every acknowledged report is kept once.
 *
 * Both act on the script's own Redis, so they run only when DOPPEL_REDIS is unset or
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
  runId,
  ServiceLoad,
  SHARDS,
  sleep,
  TestCluster,
  TYPE,
} from "./harness.ts";

export interface RedisOutage {
  /** The suite's title. */
  readonly suite: string;
  /** The test's title. */
  readonly test: string;
  /** The cluster's name prefix. */
  readonly prefix: string;
  /** The three nodes' ids. */
  readonly members: readonly [string, string, string];
  /** How the outage is printed: "Redis down", "Redis paused". */
  readonly what: string;
  /** Takes Redis away. */
  cut(): Promise<void>;
  /** Brings it back (also run after the test, whatever happened). */
  restore(): Promise<void>;
}

export function describeRedisOutage(outage: RedisOutage): void {
  if (noRestartReason) process.stdout.write(`[cluster] ${outage.suite}: skipped: ${noRestartReason}\n`);

  describe.skipIf(noRestartReason !== undefined)(outage.suite, () => {
    let cluster: TestCluster;
    let store: CassandraEventStore;
    const tag = runId();
    const members = [...outage.members];

    beforeAll(async () => {
      ({ cluster, store } = await TestCluster.create(outage.prefix));
      await cluster.start(...members);
    });
    afterAll(async () => {
      await outage.restore().catch(() => undefined);
      await cluster?.close();
      await store?.close();
    });

    it(outage.test, async () => {
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
      let outFor = 0;
      let recovered = 0;
      try {
        await sleep(1500);
        const cutAt = Date.now();
        await outage.cut();
        try {
          // Every node stops writing: each lease is dropped at its local deadline.
          await eventually(
            async () => ((await cluster.probes()).every((p) => p.owned.length === 0) ? true : undefined),
            "every node to give up its leases",
            10_000,
          );
          outFor = Date.now() - cutAt;
          // Operators asking meanwhile are told the cluster store is unreachable: neither an
          // internal error nor a wait on a server that does not answer.
          await expect(cluster.node(members[0]!).client.cluster()).rejects.toMatchObject({
            code: "UNAVAILABLE",
          });
        } finally {
          await outage.restore();
        }
        const restoredAt = Date.now();
        const after = await cluster.settled(members, 30_000);
        recovered = Date.now() - restoredAt;
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
        `[cluster] ${outage.what} ${outFor} ms (until every lease was dropped); settled ${recovered} ms after it was back; ${services.errors.length} gRPC calls failed meanwhile\n`,
      );
      await expectEveryReportOnce(cluster, store, devices, 60_000);
      // Reports kept flowing after the outage.
      expect(devices.count).toBeGreaterThan(0);
      await devices.close();
    });
  });
}
