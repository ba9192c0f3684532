/**
 * A node paused (SIGSTOP) for longer than its leases, then resumed (SIGCONT), while devices
 * report: the others take its shards while it sleeps; when it wakes it refuses to write with the
 * leases it had (their local deadline has passed, whatever its timers and sockets still hold),
 * rejoins, and takes its shards back with new epochs. Its old epochs never appear in the log after
 * the pause, no twin is quarantined, and every acknowledged report is in its twin's log once.
 *
 * The pause comes while the node holds two writes it has already fenced in (fault injection in
 * fixtures/node.ts): one before the store's conflict-check read, one after it — the two places a
 * real SIGSTOP, GC pause or slow store can catch a write. Both must be refused after the resume
 * (neither landing under the old lease nor quarantining the twin the new owner wrote meanwhile),
 * and retried by the router on the new owner.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { rawClient } from "../cassandra/harness.ts";
import {
  DeviceLoad,
  epochs,
  expectEveryReportOnce,
  idsInShards,
  KEYSPACE,
  ownershipSettled,
  ringAssignment,
  runId,
  shardOfTwin,
  sleep,
  TestCluster,
  TIMINGS,
  TYPE,
} from "./harness.ts";

describe("a node paused past its lease (SIGSTOP, SIGCONT)", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  const members = ["p1", "p2", "p3"];
  const victim = "p2";
  const others = members.filter((id) => id !== victim);
  const moved = ringAssignment(members).flatMap((node, shard) => (node === victim ? [shard] : []));
  // Two twins of the victim's shards whose first write the victim holds right after its fence
  // check — one before the store's conflict-check read, one after it — when the pause comes.
  const [stallBefore, stallAfter] = [...idsInShards(`${tag}-stall`, moved.slice(0, 2)).values()].map(
    (ids) => ids[0]!,
  ) as [string, string];

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("pause"));
    await Promise.all([
      cluster.spawn(victim, {
        DOPPEL_IT_STALL_BEFORE_READ: stallBefore,
        DOPPEL_IT_STALL_AFTER_READ: stallAfter,
      }),
      ...others.map((id) => cluster.spawn(id)),
    ]);
  });
  afterAll(async () => {
    await cluster?.close();
    await store?.close();
  });

  it("does not write to the shards it lost, and no twin is quarantined", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const before = await cluster.settled(members);
    await ownershipSettled(cluster, members);
    expect(moved.length).toBeGreaterThan(1);
    const oldEpoch = new Map(moved.map((shard) => [shard, epochs(before)[shard]!]));
    const probes = [
      ...[...idsInShards(`${tag}-probe`, moved).values()].map((ids) => ids[0]!),
      stallBefore,
      stallAfter,
    ];
    const twins = Array.from({ length: 48 }, (_, i) => `${tag}-d${i}`);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    devices.start();
    let pausedAt = 0;
    let resumedAt = 0;
    const node = cluster.node(victim);
    let stalledCalls: Promise<string>[] = [];
    try {
      await sleep(1500);
      // Through the victim, which owns their shards: it fences these writes in, then holds them.
      stalledCalls = [stallBefore, stallAfter].map((id) =>
        node.client.invoke({ type: TYPE, id }, "setTarget", { celsius: 25 }).then(
          (result) => `ok at version ${result.version}`,
          (error: Error & { code?: string }) => `${error.code}: ${error.message}`,
        ),
      );
      await node.saw(`STALLED before-read ${stallBefore}`);
      await node.saw(`STALLED after-read ${stallAfter}`);
      pausedAt = Date.now();
      node.pause();
      // The others take its shards (new epochs) and write to every one of them.
      const during = await cluster.settled(others);
      for (const shard of moved) expect(during.shards[shard]!.epoch).toBeGreaterThan(oldEpoch.get(shard)!);
      await Promise.all(
        probes.map((id, i) =>
          cluster.node(others[i % 2]!).client.invoke({ type: TYPE, id }, "setTarget", { celsius: 23 }),
        ),
      );
      // Stay asleep past ackWait, so the reports it had taken are redelivered to the others.
      await sleep(Math.max(0, pausedAt + TIMINGS.ackWait + 1000 - Date.now()));
      resumedAt = Date.now();
      cluster.node(victim).resume();
      const after = await cluster.settled(members);
      for (const shard of moved)
        expect(after.shards[shard]!.epoch).toBeGreaterThan(during.shards[shard]!.epoch);
      await ownershipSettled(cluster, members);
      // It writes its shards again (new epochs), through itself and through the others.
      await Promise.all(
        probes.map((id, i) =>
          cluster.node(members[i % 3]!).client.invoke({ type: TYPE, id }, "setTarget", { celsius: 24 }),
        ),
      );
      await sleep(1000);
    } finally {
      await devices.stop();
    }
    const held = await Promise.all(stalledCalls);
    process.stdout.write(
      `[cluster] ${victim} paused ${resumedAt - pausedAt} ms; ${devices.count} reports acknowledged meanwhile; the writes it held: ${held.join("; ")}\n`,
    );
    // The held writes were refused by the victim (its lease was gone) and retried by its router on
    // the new owner: each succeeded, and is in its twin's log exactly once.
    expect(held.filter((outcome) => !outcome.startsWith("ok"))).toEqual([]);
    for (const id of [stallBefore, stallAfter]) {
      const log = await store.readHistory({ type: TYPE, id }, { limit: 1000 });
      expect(log.filter((e) => e.type === "setPointChanged" && e.data["setPoint"] === 25)).toHaveLength(1);
    }
    await expectEveryReportOnce(cluster, store, devices);

    // The log of every twin of the moved shards: the paused node's old epochs only before the
    // pause, epochs never going back along a log, and nothing quarantined.
    const stale: string[] = [];
    const backwards: string[] = [];
    const quarantined: string[] = [];
    let oldEpochEvents = 0;
    for (const id of [...twins, ...probes]) {
      const ref = { type: TYPE, id };
      const events = await store.readHistory(ref, { limit: 100_000 });
      const shard = shardOfTwin(id);
      let epoch = 0;
      for (const event of events) {
        if (event.writer.epoch < epoch)
          backwards.push(`${id}#${event.seq} ${event.writer.node}@${event.writer.epoch}`);
        epoch = Math.max(epoch, event.writer.epoch);
        if (event.writer.node === victim && event.writer.epoch === oldEpoch.get(shard)) {
          oldEpochEvents++;
          if (event.at > pausedAt + 20) stale.push(`${id}#${event.seq} at +${event.at - pausedAt} ms`);
        }
      }
      const loaded = await store.loadTwin(ref);
      if (loaded.quarantine !== undefined) quarantined.push(`${id}: ${loaded.quarantine}`);
    }
    // When each of those events reached Cassandra (the driver's client-side write time, µs): a
    // write sent after the resume would carry a later time than the resume, whatever its turn's time.
    const raw = await rawClient();
    const lateWrites: string[] = [];
    try {
      for (const id of [...twins, ...probes]) {
        const rows = await raw.execute(
          `SELECT seq, writer_node, writer_epoch, writetime(event_type) AS written FROM ${KEYSPACE}.events WHERE twin_type = ? AND twin_id = ? AND bucket = 0`,
          [TYPE, id],
          { prepare: true },
        );
        for (const row of rows.rows) {
          const epoch = Number(row["writer_epoch"]);
          const written = Number(row["written"]) / 1000;
          if (
            row["writer_node"] === victim &&
            epoch === oldEpoch.get(shardOfTwin(id)) &&
            written >= resumedAt
          ) {
            lateWrites.push(
              `${id}#${row["seq"]} written ${Math.round(written - resumedAt)} ms after the resume`,
            );
          }
        }
      }
    } finally {
      await raw.shutdown();
    }
    process.stdout.write(
      `[cluster] pause: ${oldEpochEvents} events of ${victim}'s old epochs, all before the pause\n`,
    );
    expect(lateWrites).toEqual([]);
    expect(oldEpochEvents).toBeGreaterThan(0);
    expect(stale).toEqual([]);
    expect(backwards).toEqual([]);
    expect(quarantined).toEqual([]);
    await devices.close();
  });
});
