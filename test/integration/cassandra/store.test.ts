/**
 * What the Cassandra store does beyond the shared contract: bounded partitions (buckets), the
 * recorded layout, large commits staged and rolled forward, and forks between writers detected on
 * append and on replay — never merged.
 */
import { randomUUID } from "node:crypto";
import type { Client } from "cassandra-driver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, Unavailable } from "../../../runtime/core/errors.ts";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import type { EventRecord, TwinCommit, Writer } from "../../../runtime/core/records.ts";
import { encodeStaged, planCommit } from "../../../runtime/persistence/cassandra/commit-plan.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { ensureCassandra, openStore, rawClient, runId, testKeyspace } from "./harness.ts";

/** A keyspace whose logs are bucketed by 4 events, so a short log spans many partitions. */
const SMALL = "doppel_it_small";
/** The keyspace as raw CQL names it. */
const KS = testKeyspace(SMALL);
const RUN = runId();
let seqType = 0;

function twin(): TwinRef {
  return { type: `S${RUN}x${seqType++}`, id: "t1" };
}

function commit(
  ref: TwinRef,
  expectedSeq: number,
  count: number,
  writer: Writer = { node: "a", epoch: 1 },
  data = {},
): TwinCommit {
  const commitId = randomUUID();
  const events: EventRecord[] = Array.from({ length: count }, (_, i) => ({
    seq: expectedSeq + 1 + i,
    type: "n",
    data: { type: "n", n: expectedSeq + 1 + i, ...data },
    at: 1_000_000 + (expectedSeq + 1 + i) * 10,
    commitId,
    writer,
  }));
  return {
    ref,
    shard: 7,
    expectedSeq,
    events,
    view: {
      ...ref,
      version: expectedSeq + count,
      state: { n: expectedSeq + count },
      reported: {},
      desired: {},
      delta: {},
      createdAt: 1,
      updatedAt: 2,
    },
    reminders: { set: [], clear: [] },
  };
}

async function commitOk(store: CassandraEventStore, commits: TwinCommit[]): Promise<void> {
  expect(await store.commit(commits)).toEqual(commits.map(() => undefined));
}

let store: CassandraEventStore;
let raw: Client;

beforeAll(async () => {
  await ensureCassandra();
  store = await openStore(SMALL, { eventsPerBucket: 4, viewBuckets: 4 });
  raw = await rawClient();
});

afterAll(async () => {
  await store?.close();
  await raw?.shutdown();
});

describe("cassandra store: partition buckets", () => {
  it("a twin with more events than one bucket holds replays correctly, each partition bounded", async () => {
    const ref = twin();
    // 23 events in commits of 3, 5 (across a bucket edge), 1, 9 and 5.
    let seq = 0;
    for (const n of [3, 5, 1, 9, 5]) {
      await commitOk(store, [commit(ref, seq, n)]);
      seq += n;
    }
    const all = await store.readEvents(ref, 0);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 23 }, (_, i) => i + 1));
    expect((await store.loadTwin(ref)).events).toEqual(all);
    expect((await store.readEvents(ref, 6, 7)).map((e) => e.seq)).toEqual([7, 8, 9, 10, 11, 12, 13]);
    expect((await store.readHistory(ref, { fromVersion: 4, toVersion: 17, limit: 100 })).length).toBe(14);
    await store.writeSnapshot(ref, {
      seq: 10,
      at: 1,
      createdAt: 1,
      state: { n: 10 },
      reported: {},
      desired: {},
      reminders: [],
      recent: [],
    });
    expect((await store.loadTwin(ref)).events.map((e) => e.seq)).toEqual(all.slice(10).map((e) => e.seq));

    // In the table: 6 partitions (buckets 0..5), none with more than 4 rows.
    const counts: number[] = [];
    for (let bucket = 0; bucket < 8; bucket++) {
      const result = await raw.execute(
        `SELECT count(*) AS n FROM ${KS}.events WHERE twin_type = ? AND twin_id = ? AND bucket = ?`,
        [ref.type, ref.id, bucket],
        { prepare: true },
      );
      counts.push(Number(result.first()["n"]));
    }
    expect(counts).toEqual([4, 4, 4, 4, 4, 3, 0, 0]);
  });

  it("a log that ends exactly at a bucket edge reads to its end, and the next commit opens a new bucket", async () => {
    const ref = twin();
    await commitOk(store, [commit(ref, 0, 8)]);
    expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await commitOk(store, [commit(ref, 8, 1)]);
    expect((await store.loadTwin(ref)).events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const stale = await store.commit([commit(ref, 8, 1)]);
    expect(stale[0]?.code).toBe(ErrorCode.ConcurrencyConflict);
  });

  it("the keyspace keeps its layout: unset settings adopt it, a different one is refused", async () => {
    const adopted = await openStore(SMALL);
    try {
      expect(adopted.layout).toEqual({ eventsPerBucket: 4, viewBuckets: 4, telemetryWindowMs: 3_600_000 });
    } finally {
      await adopted.close();
    }
    await expect(openStore(SMALL, { eventsPerBucket: 1000 })).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining("created with eventsPerBucket = 4, not 1000"),
    });
  });
});

describe("cassandra store: large commits", () => {
  it("writes a commit over the batch size limit in stages and reads it back whole", async () => {
    const ref = twin();
    const big = "x".repeat(20_000);
    const large = commit(ref, 0, 10, undefined, { big }); // ~200 KB, spans 3 buckets
    await commitOk(store, [large]);
    expect(await store.readEvents(ref, 0)).toEqual(large.events);
    expect(await store.readView(ref)).toEqual(large.view);
    // The head records the commit and its plan (kept until the next commit replaces it).
    const head = await raw.execute(
      `SELECT head_seq, head_epoch, staged_commit FROM ${KS}.twins WHERE twin_type = ? AND twin_id = ?`,
      [ref.type, ref.id],
      { prepare: true },
    );
    expect(Number(head.first()?.["head_seq"])).toBe(10);
    expect(Number(head.first()?.["head_epoch"])).toBe(1);
    expect(typeof head.first()?.["staged_commit"]).toBe("string");
  });

  it("completes a commit whose writer died after its commit point, before the twin is loaded", async () => {
    const ref = twin();
    await commitOk(store, [commit(ref, 0, 2)]);
    const wake = { shard: 424_242, type: ref.type, id: ref.id, name: "wake", dueAt: 77 };
    const interrupted = {
      ...commit(ref, 2, 6, { node: "dead", epoch: 1 }, { big: "y".repeat(10_000) }),
      reminders: { set: [wake], clear: [] },
    };
    const plan = planCommit(interrupted, store.layout, new Map());
    // The dead writer passed its commit point (the head moved to 8 with its plan) and wrote only
    // the first partition of its events.
    await raw.execute(
      `UPDATE ${KS}.twins SET head_seq = 8, head_epoch = 1, staged_seq = ?, staged_commit = ? WHERE twin_type = ? AND twin_id = ?`,
      [
        2,
        encodeStaged({ expectedSeq: 2, firstCommitId: interrupted.events[0]!.commitId, ...plan }),
        ref.type,
        ref.id,
      ],
      { prepare: true },
    );
    const firstGroup = plan.eventGroups[0]!;
    await raw.batch(
      firstGroup.map((n) => ({
        query: `INSERT INTO ${KS}.events (twin_type, twin_id, bucket, seq, commit_id, event_type, data, at, causation, writer_node, writer_epoch, principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        params: n.params as unknown[],
      })),
      { prepare: true, logged: false },
    );
    const loaded = await store.loadTwin(ref);
    expect(loaded.quarantine).toBeUndefined();
    expect(loaded.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await store.readView(ref)).toEqual(interrupted.view);
    expect(await store.dueReminders([424_242], 100, 10)).toEqual([wake]);
    await commitOk(store, [commit(ref, 8, 1)]);
    // The twin's reminder rows and index stay consistent for later commits.
    const clear = { ...commit(ref, 9, 1), reminders: { set: [], clear: ["wake"] } };
    await commitOk(store, [clear]);
    expect(await store.dueReminders([424_242], 100, 10)).toEqual([]);
  });

  it("repairs the view and reminder index of a commit whose writer died after its events, before its derived rows", async () => {
    const ref = twin();
    await commitOk(store, [commit(ref, 0, 2)]);
    const wake = { shard: 424_243, type: ref.type, id: ref.id, name: "wake", dueAt: 78 };
    const interrupted = {
      ...commit(ref, 2, 1, { node: "dead", epoch: 1 }),
      reminders: { set: [wake], clear: [] },
    };
    const plan = planCommit(interrupted, store.layout, new Map());
    // The dead writer passed its commit point and wrote its event (the apply sends events and
    // derived rows without a logged batch), but none of its derived rows landed.
    await raw.execute(
      `UPDATE ${KS}.twins SET head_seq = 3, head_epoch = 1, staged_seq = ?, staged_commit = ? WHERE twin_type = ? AND twin_id = ?`,
      [
        2,
        encodeStaged({ expectedSeq: 2, firstCommitId: interrupted.events[0]!.commitId, ...plan }),
        ref.type,
        ref.id,
      ],
      { prepare: true },
    );
    const [event] = plan.eventGroups.flat();
    await raw.execute(
      `INSERT INTO ${KS}.events (twin_type, twin_id, bucket, seq, commit_id, event_type, data, at, causation, writer_node, writer_epoch, principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      event!.params as unknown[],
      { prepare: true },
    );
    expect((await store.readView(ref))?.version).toBe(2);
    expect(await store.dueReminders([424_243], 100, 10)).toEqual([]);
    const loaded = await store.loadTwin(ref, { claimEpoch: 2 });
    expect(loaded.events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(await store.readView(ref)).toEqual(interrupted.view);
    expect(await store.dueReminders([424_243], 100, 10)).toEqual([wake]);
    // A later commit's derived rows win over the repaired ones, and a second load changes nothing.
    await commitOk(store, [
      { ...commit(ref, 3, 1, { node: "a", epoch: 2 }), reminders: { set: [], clear: ["wake"] } },
    ]);
    await store.loadTwin(ref);
    expect((await store.readView(ref))?.version).toBe(4);
    expect(await store.dueReminders([424_243], 100, 10)).toEqual([]);
  });
});

describe("cassandra store: concurrent writers", () => {
  it("a second writer at a stale sequence is refused on append and writes nothing", async () => {
    const ref = twin();
    const other = await openStore(SMALL);
    try {
      await commitOk(store, [commit(ref, 0, 3, { node: "node-a", epoch: 1 })]);
      const [result] = await other.commit([commit(ref, 2, 1, { node: "node-b", epoch: 2 })]);
      expect(result?.code).toBe(ErrorCode.ConcurrencyConflict);
      expect((await other.readEvents(ref, 0)).map((e) => e.writer.node)).toEqual([
        "node-a",
        "node-a",
        "node-a",
      ]);
    } finally {
      await other.close();
    }
  });

  it("asks the writer's fence right before sending the commit point: a refused commit writes nothing", async () => {
    const ref = twin();
    await commitOk(store, [commit(ref, 0, 2)]);
    const refusal = new Unavailable("lease lost while the write waited", { retry: "not-owner" });
    const asked: number[] = [];
    const fence = (c: TwinCommit) => {
      asked.push(c.expectedSeq);
      return refusal;
    };
    expect(await store.commit([commit(ref, 2, 1)], { fence })).toEqual([refusal]);
    const large = commit(ref, 2, 3, undefined, { big: "x".repeat(20_000) });
    expect(await store.commit([large], { fence })).toEqual([refusal]);
    // A conflicting commit the fence lets through is refused by the commit point.
    const conflicting = await store.commit([commit(ref, 1, 1)], { fence: () => undefined });
    expect(conflicting[0]?.code).toBe(ErrorCode.ConcurrencyConflict);
    expect(asked).toEqual([2, 2]);
    expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2]);
    const head = await raw.execute(
      `SELECT head_seq FROM ${KS}.twins WHERE twin_type = ? AND twin_id = ?`,
      [ref.type, ref.id],
      { prepare: true },
    );
    expect(Number(head.first()?.["head_seq"])).toBe(2);
    expect(await store.commit([commit(ref, 2, 1)], { fence: () => undefined })).toEqual([undefined]);
    expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it("a fork left in the log by writers that bypassed the commit point (schema-1 data) is caught on replay: quarantined, never merged", async () => {
    const ref = twin();
    await commitOk(store, [commit(ref, 0, 2, { node: "node-a", epoch: 1 })]);
    // Writer B's row at seq 3 lands (as if its check ran just before A's write)...
    await raw.execute(
      `INSERT INTO ${KS}.events (twin_type, twin_id, bucket, seq, commit_id, event_type, data, at, writer_node, writer_epoch) VALUES (?, ?, 0, 3, 'b-commit', 'n', '{"type":"n"}', 5, 'node-b', 2)`,
      [ref.type, ref.id],
      { prepare: true },
    );
    // ...and A's row at seq 3 lands too.
    const a = commit(ref, 2, 1, { node: "node-a", epoch: 1 });
    await raw.execute(
      `INSERT INTO ${KS}.events (twin_type, twin_id, bucket, seq, commit_id, event_type, data, at, writer_node, writer_epoch) VALUES (?, ?, 0, 3, ?, 'n', '{"type":"n"}', 5, 'node-a', 1)`,
      [ref.type, ref.id, a.events[0]!.commitId],
      { prepare: true },
    );
    const loaded = await store.loadTwin(ref);
    expect(loaded.quarantine).toContain("two writers appended at version 3");
    expect(loaded.quarantine).toContain("by node-a (epoch 1)");
    expect(loaded.quarantine).toContain("by node-b (epoch 2)");
    expect(loaded.events.map((e) => e.seq)).toEqual([1, 2]);
    await expect(store.readEvents(ref, 0)).rejects.toMatchObject({ code: ErrorCode.ConcurrencyConflict });
    await expect(store.readHistory(ref, { limit: 10 })).rejects.toMatchObject({
      code: ErrorCode.ConcurrencyConflict,
    });
    const [next] = await store.commit([commit(ref, 3, 1)]);
    expect(next?.code).toBe(ErrorCode.ConcurrencyConflict);
    // The quarantine was recorded: another store (node) sees it too.
    const other = await openStore(SMALL);
    try {
      expect((await other.loadTwin(ref)).quarantine).toContain("version 3");
    } finally {
      await other.close();
    }
  });

  it("of two stores racing at the same seq, exactly one wins each race: no fork, whatever the timing", async () => {
    const other = await openStore(SMALL);
    try {
      const refs = Array.from({ length: 40 }, () => twin());
      await commitOk(
        store,
        refs.map((ref) => commit(ref, 0, 1)),
      );
      const results = await Promise.all(
        refs.map((ref) =>
          Promise.all([
            store.commit([commit(ref, 1, 1, { node: "node-a", epoch: 1 })]),
            other.commit([commit(ref, 1, 1, { node: "node-b", epoch: 2 })]),
          ]),
        ),
      );
      for (const [i, [[ra], [rb]]] of results.entries()) {
        const ref = refs[i]!;
        expect([ra, rb].filter((r) => r === undefined)).toHaveLength(1);
        const loser = ra ?? rb;
        // A loses as a conflict or, when B (epoch 2) got there first, as a stale epoch.
        expect([ErrorCode.ConcurrencyConflict, ErrorCode.Unavailable]).toContain(loser?.code);
        if (rb !== undefined) expect(rb.code).toBe(ErrorCode.ConcurrencyConflict);
        const loaded = await store.loadTwin(ref);
        expect(loaded.quarantine).toBeUndefined();
        expect(loaded.events.map((e) => e.seq)).toEqual([1, 2]);
        expect(loaded.events[1]?.writer.node).toBe(ra === undefined ? "node-a" : "node-b");
      }
    } finally {
      await other.close();
    }
  });
});
