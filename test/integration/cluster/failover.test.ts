/**
 * kill -9 of one node of three while devices report over NATS: its shards are taken over by the
 * survivors once it is declared dead and its leases expire (`TIMINGS`; how soon is printed), every
 * report acknowledged to a device is in its twin's log exactly once (reports the dead node had
 * taken but not acknowledged are redelivered by JetStream after ackWait), and event sequences
 * have no gaps. A command that a survivor had sent to the victim, which the victim was still
 * running when it died, fails with UNAVAILABLE "outcome unknown" (instead of DEADLINE_EXCEEDED at
 * its 30 s deadline).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import {
  DeviceLoad,
  epochs,
  eventually,
  expectEveryReportOnce,
  idsInShards,
  ownershipSettled,
  ringAssignment,
  runId,
  shardOfTwin,
  TestCluster,
  TYPE,
} from "./harness.ts";

describe("a node is killed (kill -9) while devices report", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  const members = ["f1", "f2", "f3"];
  const victim = "f2";
  const survivors = members.filter((id) => id !== victim);
  const moved = ringAssignment(members).flatMap((node, shard) => (node === victim ? [shard] : []));
  // A twin of the victim's whose first write the victim holds (for a minute) when it is killed.
  const stuck = [...idsInShards(`${tag}-stuck`, moved.slice(0, 1)).values()][0]![0]!;

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("failover"));
    await Promise.all([
      cluster.spawn(victim, { DOPPEL_IT_STALL_IN_DRIVER: stuck, DOPPEL_IT_STALL_MS: "60000" }),
      ...survivors.map((id) => cluster.spawn(id)),
    ]);
  });
  afterAll(async () => {
    await cluster?.close();
    await store?.close();
  });

  it("its shards process again on the survivors, and every acknowledged report is in its twin's log exactly once, without gaps", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const before = await cluster.settled(members);
    await ownershipSettled(cluster, members);
    expect(moved.length).toBeGreaterThan(0);
    const probes = [...idsInShards(`${tag}-probe`, moved).values()].map((ids) => ids[0]!);
    const twins = Array.from({ length: 48 }, (_, i) => `${tag}-d${i}`);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    devices.start();
    let failover: number[];
    let killedAtWall = 0;
    let stuckCall: Promise<string> = Promise.resolve("not sent");
    let stuckEndedAt = 0;
    let killedAtMs = 0;
    try {
      // Load until the victim has persisted reports of its shards (it has work in flight when killed).
      await eventually(
        async () => {
          for (const id of twins.filter((t) => moved.includes(shardOfTwin(t)))) {
            if ((await store.readHistory({ type: TYPE, id }, { limit: 1 })).length > 0) return true;
          }
          return undefined;
        },
        "the victim persisting reports of its shards",
        60_000,
        100,
      );
      // A command through a survivor that the victim takes and is still running at the kill.
      stuckCall = cluster
        .node(survivors[0]!)
        .client.invoke({ type: TYPE, id: stuck }, "setTarget", { celsius: 30 })
        .then(
          (result) => `ok at version ${result.version}`,
          (error: Error & { code?: string }) => `${error.code}: ${error.message}`,
        )
        .finally(() => {
          stuckEndedAt = performance.now();
        });
      await cluster.node(victim).saw(`STALLED in-driver ${stuck}`);
      const killedAt = performance.now();
      killedAtMs = killedAt;
      killedAtWall = Date.now();
      await cluster.node(victim).crash();
      // One write per moved shard through the survivors, sent right away: each is retried by the
      // router until the shard's new owner holds its lease; none may fail.
      failover = await Promise.all(
        probes.map(async (id, i) => {
          await cluster
            .node(survivors[i % 2]!)
            .client.invoke({ type: TYPE, id }, "setTarget", { celsius: 23 });
          return Math.round(performance.now() - killedAt);
        }),
      );
      const after = await cluster.settled(survivors);
      const was = epochs(before);
      for (const shard of moved) expect(after.shards[shard]!.epoch).toBeGreaterThan(was[shard]!);
      await ownershipSettled(cluster, survivors);
      // Devices go on reporting to the survivors for a while (every device about once more).
      const settledAt = devices.count;
      await eventually(() => devices.count >= settledAt + twins.length, "reports after the failover", 60_000);
    } finally {
      await devices.stop();
    }
    const stuckOutcome = await stuckCall;
    expect(stuckOutcome).toMatch(/^UNAVAILABLE: node f2 went away .* the outcome is unknown/);
    // Before its own deadline (the test clients' timeout): the caller learns the node is gone, it
    // does not wait the deadline out (which would answer DEADLINE_EXCEEDED, not UNAVAILABLE).
    process.stdout.write(
      `[cluster] kill -9: a command the victim was running failed (outcome unknown) ${Math.round(stuckEndedAt - killedAtMs)} ms after the kill\n`,
    );
    const first = Math.min(...failover);
    const all = Math.max(...failover);
    process.stdout.write(
      `[cluster] kill -9 of ${victim}: first write to a moved shard after ${first} ms, all ${moved.length} moved shards written after ${all} ms (declared dead after ${cluster.timings.deadAfter} ms, lease TTL ${cluster.timings.leaseTtl} ms)\n`,
    );

    const log = await expectEveryReportOnce(cluster, store, devices);
    // Device reports of the moved shards were processed by the survivors after the kill too: the
    // first of them (by its turn's time) is another measure of the failover.
    let firstReport = Number.POSITIVE_INFINITY;
    for (const id of twins.filter((t) => moved.includes(shardOfTwin(t)))) {
      const events = await store.readHistory({ type: TYPE, id }, { limit: 100_000 });
      const later = events.find((e) => e.writer.node !== victim && e.at >= killedAtWall);
      if (later) firstReport = Math.min(firstReport, later.at - killedAtWall);
    }
    // A survivor persisted device reports of the moved shards after the kill (how soon is printed).
    expect(Number.isFinite(firstReport)).toBe(true);
    process.stdout.write(
      `[cluster] kill -9: first device report on a moved shard persisted ${firstReport} ms after the kill; ${devices.count} reports acknowledged, ${log.reports} in the log, each once; ${log.twins} twins without gaps\n`,
    );
    await devices.close();
  }, 300_000);
});
