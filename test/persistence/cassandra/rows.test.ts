import cassandra from "cassandra-driver";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../../runtime/core/errors.ts";
import type { EventRecord, TwinSnapshot, TwinView } from "../../../runtime/core/records.ts";
import {
  cqlLimit,
  decodeEvent,
  decodeSample,
  decodeSnapshot,
  decodeView,
  eventParams,
  snapshotParams,
  toNumber,
  viewParams,
} from "../../../runtime/persistence/cassandra/rows.ts";

const Long = cassandra.types.Long;

/** The row Cassandra would return for an event written with `eventParams` (bigints come back as Long). */
function eventRow(event: EventRecord): Record<string, unknown> {
  const [seq, commitId, type, data, at, causation, node, epoch] = eventParams(event);
  return {
    seq: Long.fromNumber(seq as number),
    commit_id: commitId,
    event_type: type,
    data,
    at: Long.fromNumber(at as number),
    causation: causation ?? null,
    writer_node: node,
    writer_epoch: Long.fromNumber(epoch as number),
  };
}

describe("cassandra row mapping", () => {
  it("round-trips an event, with and without causation, through its bound values", () => {
    const event: EventRecord = {
      seq: 42,
      type: "$reported",
      data: { type: "$reported", patch: { t: 21.5, list: [1, "x", null] } },
      at: 1_700_000_000_123,
      commitId: "abc.1",
      causation: "msg-7",
      writer: { node: "node-ü", epoch: 123_456_789_012 },
    };
    expect(decodeEvent(eventRow(event))).toEqual(event);
    const { causation: _c, ...bare } = event;
    const decoded = decodeEvent(eventRow(bare));
    expect(decoded).toEqual(bare);
    expect("causation" in decoded).toBe(false);
    // An absent causation is bound as undefined: "unset", so no tombstone is written.
    expect(eventParams(bare)[5]).toBeUndefined();
  });

  it("round-trips a view and a snapshot", () => {
    const view: TwinView = {
      type: "pump",
      id: "p1",
      version: 9,
      state: { on: true },
      reported: { rpm: 1200 },
      desired: {},
      delta: { rpm: 1300 },
      createdAt: 1,
      updatedAt: 2,
    };
    const [id, version, state, reported, desired, delta, createdAt, updatedAt] = viewParams(view);
    expect(
      decodeView("pump", {
        twin_id: id,
        version,
        state,
        reported,
        desired,
        delta,
        created_at: createdAt,
        updated_at: updatedAt,
      }),
    ).toEqual(view);

    const snapshot: TwinSnapshot = {
      seq: 100,
      at: 5,
      createdAt: 1,
      state: { a: 1 },
      reported: {},
      desired: { b: 2 },
      reminders: [{ name: "tick", dueAt: 9, payload: {}, every: 60_000 }],
      recent: ["m1"],
    };
    const p = snapshotParams({ type: "pump", id: "p1" }, snapshot);
    expect(p[0]).toBe(100); // USING TIMESTAMP = seq
    const row = {
      snapshot_seq: Long.fromNumber(p[1] as number),
      snapshot_at: p[2],
      created_at: p[3],
      state: p[4],
      reported: p[5],
      desired: p[6],
      reminders: p[7],
      recent: p[8],
    };
    expect(decodeSnapshot(row)).toEqual(snapshot);
    expect(decodeSnapshot({ snapshot_seq: null, quarantine_reason: "x" })).toBeUndefined();
  });

  it("decodes telemetry samples, an empty metrics map being stored as null", () => {
    const ref = { type: "pump", id: "p1" };
    expect(decodeSample(ref, { at: Long.fromNumber(5), metrics: { rpm: 1200, temp: -3.5 } })).toEqual({
      ref,
      at: 5,
      metrics: { rpm: 1200, temp: -3.5 },
    });
    expect(decodeSample(ref, { at: 6, metrics: null }).metrics).toEqual({});
  });

  it("refuses rows of the wrong shape with Internal, and clamps CQL limits", () => {
    expect(() => decodeEvent({ seq: "x" })).toThrow(expect.objectContaining({ code: ErrorCode.Internal }));
    expect(() => toNumber(undefined, "seq")).toThrow(/column seq is not a number/);
    expect(toNumber(10n)).toBe(10);
    expect([cqlLimit(0), cqlLimit(10.7), cqlLimit(Number.POSITIVE_INFINITY), cqlLimit(1e12)]).toEqual([
      1, 10, 2_147_483_647, 2_147_483_647,
    ]);
  });
});
