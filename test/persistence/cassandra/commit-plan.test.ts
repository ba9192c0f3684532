import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../../runtime/core/errors.ts";
import type { EventRecord, TwinCommit } from "../../../runtime/core/records.ts";
import {
  bind,
  DEFLATE_FROM_BYTES,
  decodeStaged,
  encodeStaged,
  planCommit,
  type ReminderRow,
} from "../../../runtime/persistence/cassandra/commit-plan.ts";
import { statementsFor } from "../../../runtime/persistence/cassandra/statements.ts";

const layout = { eventsPerBucket: 4, viewBuckets: 8, telemetryWindowMs: 3_600_000 };
const ref = { type: "pump", id: "p1" };

function commit(
  expectedSeq: number,
  count: number,
  reminders: TwinCommit["reminders"] = { set: [], clear: [] },
): TwinCommit {
  const events: EventRecord[] = Array.from({ length: count }, (_, i) => ({
    seq: expectedSeq + 1 + i,
    type: "ran",
    data: { type: "ran", i },
    at: 1000 + i,
    commitId: "c1",
    writer: { node: "n", epoch: 1 },
  }));
  const version = expectedSeq + count;
  return {
    ref,
    shard: 3,
    expectedSeq,
    events,
    view: { ...ref, version, state: {}, reported: {}, desired: {}, delta: {}, createdAt: 1, updatedAt: 2 },
    reminders,
  };
}

const names = (plan: ReturnType<typeof planCommit>) => plan.derived.map((d) => d.statement);

describe("cassandra commit plan", () => {
  it("groups events by bucket partition, ascending, and indexes the buckets they open", () => {
    const plan = planCommit(commit(2, 5), layout, new Map()); // seq 3..7: buckets 0 (3,4) and 1 (5,6,7)
    expect(plan.eventGroups.map((g) => g.map((e) => e.params[3]))).toEqual([
      [3, 4],
      [5, 6, 7],
    ]);
    expect(plan.eventGroups.map((g) => g[0]!.params[2])).toEqual([0, 1]);
    expect(names(plan)).toEqual(["insertBucket", "upsertView"]);
    expect(plan.derived[0]!.params).toEqual(["pump", "p1", 1, 5, 1002]);
    // The view is written with USING TIMESTAMP = version (last param).
    expect(plan.derived[1]!.params.at(-1)).toBe(7);
    expect(plan.bytes).toBeGreaterThan(0);
  });

  it("moves a reminder's index entry when its due time changes, and leaves an unchanged one alone", () => {
    const existing = new Map<string, ReminderRow>([
      ["moved", { shard: 3, dueAt: 100 }],
      ["same", { shard: 3, dueAt: 200 }],
      ["gone", { shard: 3, dueAt: 300 }],
    ]);
    const plan = planCommit(
      commit(10, 1, {
        set: [
          { shard: 3, type: "pump", id: "p1", name: "moved", dueAt: 150 },
          { shard: 3, type: "pump", id: "p1", name: "same", dueAt: 200 },
          { shard: 3, type: "pump", id: "p1", name: "both", dueAt: 400 },
        ],
        clear: ["gone", "both", "unknown"],
      }),
      layout,
      existing,
    );
    const statements = plan.derived.map((d) => [d.statement, ...d.params]);
    expect(statements).toEqual([
      ["upsertView", "pump", expect.any(Number), "p1", 11, "{}", "{}", "{}", "{}", 1, 2, undefined, 11],
      ["deleteIndex", 11, 3, 300, "pump", "p1", "gone"],
      ["deleteReminderRow", 11, "pump", "p1", "gone"],
      ["deleteReminderRow", 11, "pump", "p1", "unknown"],
      ["deleteIndex", 11, 3, 100, "pump", "p1", "moved"],
      ["setIndex", 3, 150, "pump", "p1", "moved", 11],
      ["setReminderRow", "pump", "p1", "moved", 3, 150, 11],
      ["setIndex", 3, 200, "pump", "p1", "same", 11],
      ["setReminderRow", "pump", "p1", "same", 3, 200, 11],
      ["setIndex", 3, 400, "pump", "p1", "both", 11],
      ["setReminderRow", "pump", "p1", "both", 3, 400, 11],
    ]);
  });

  it("refuses events that do not continue the log with InvalidArgument", () => {
    const bad = { ...commit(0, 2), expectedSeq: 5 };
    expect(() => planCommit(bad, layout, new Map())).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => planCommit({ ...commit(0, 1), expectedSeq: -1 }, layout, new Map())).toThrow(/non-negative/);
  });

  it("stages a plan as statement names and values, keeping unset values, and runs only known statements", () => {
    const s = statementsFor("doppel_test");
    const plan = planCommit(commit(0, 2), layout, new Map());
    const text = encodeStaged({ expectedSeq: 0, firstCommitId: "c1", ...plan });
    expect(text).not.toContain("INSERT");
    const back = decodeStaged(text, s);
    expect(back.eventGroups).toHaveLength(1);
    expect(back.eventGroups[0]![0]!.params[8]).toBeUndefined(); // causation: unset, not null
    expect(bind(s, back.eventGroups[0]!)[0]!.query).toBe(s.insertEvent);
    const forgedGroups = [[{ statement: "constructor" as never, params: [] }]];
    const forged = encodeStaged({
      expectedSeq: 0,
      firstCommitId: "c1",
      eventGroups: forgedGroups,
      derived: [],
    });
    expect(() => decodeStaged(forged, s)).toThrow(/staged commit is malformed/);
  });

  it("stages a large plan deflated and reads it back whole; a small one, or one staged before, stays JSON", () => {
    const s = statementsFor("doppel_test");
    const large = { expectedSeq: 0, firstCommitId: "c1", ...planCommit(commit(0, 8), layout, new Map()) };
    // As schema 5 staged it: JSON, unset values marked.
    const json = JSON.stringify(large, (_key, value: unknown) =>
      value === undefined ? { $unset: true } : value,
    );
    expect(json.length).toBeGreaterThanOrEqual(DEFLATE_FROM_BYTES);
    const text = encodeStaged(large);
    expect(text.startsWith("deflate:")).toBe(true);
    expect(text.length).toBeLessThan(json.length / 2);
    const back = decodeStaged(text, s);
    expect(back.eventGroups.flat().map((n) => n.params[3])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]); // seqs
    expect(back).toEqual(decodeStaged(json, s));

    const small = { expectedSeq: 0, firstCommitId: "c1", eventGroups: [], derived: [] };
    expect(encodeStaged(small)).toBe(JSON.stringify(small));

    const damaged = `deflate:${Buffer.from("not deflate at all").toString("base64")}`;
    expect(() => decodeStaged(damaged, s)).toThrow(
      expect.objectContaining({
        code: ErrorCode.InvalidArgument,
        message: expect.stringMatching(/malformed/),
      }),
    );
  });
});
