/**
 * History and telemetry range reads on Cassandra, on known data: version and time ranges across
 * many log partitions (including event times that step back a little), and telemetry over several
 * time windows, raw and downsampled through the runtime (`GetHistory` / `GetTelemetry` paths).
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import type { EventRecord, TwinCommit } from "../../../runtime/core/records.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { ensureCassandra, openStore, runId } from "./harness.ts";
import { Meter } from "./twins.ts";

const RUN = runId();
let small: CassandraEventStore;
let store: CassandraEventStore;
let node: DoppelNode;

beforeAll(async () => {
  await ensureCassandra();
  small = await openStore("doppel_it_small", { eventsPerBucket: 4, viewBuckets: 4 });
  store = await openStore("doppel_it_runtime");
  node = await DoppelNode.start(
    { nodeId: "history", store: { kind: "memory" }, grpc: { listen: false } },
    { twins: [Meter], store, logger: silentLogger() },
  );
});

afterAll(async () => {
  await node?.stop();
  await small?.close();
  await store?.close();
});

/** Writes events with the given times (one commit of three at a time) and returns them. */
async function writeLog(ref: TwinRef, times: readonly number[]): Promise<EventRecord[]> {
  const events: EventRecord[] = times.map((at, i) => ({
    seq: i + 1,
    type: "tick",
    data: { type: "tick", i: i + 1 },
    at,
    commitId: `c-${Math.floor(i / 3)}`,
    writer: { node: "n", epoch: 0 },
  }));
  for (let i = 0; i < events.length; i += 3) {
    const batch = events.slice(i, i + 3);
    const commit: TwinCommit = {
      ref,
      shard: 0,
      expectedSeq: i,
      events: batch,
      view: {
        ...ref,
        version: i + batch.length,
        state: {},
        reported: {},
        desired: {},
        delta: {},
        createdAt: 0,
        updatedAt: 0,
      },
      reminders: { set: [], clear: [] },
    };
    expect(await small.commit([commit])).toEqual([undefined]);
  }
  return events;
}

const seqs = (events: readonly EventRecord[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("cassandra history", () => {
  it("reads by version range, by time range and both, with limits, across many partitions", async () => {
    const ref = { type: `H${RUN}a`, id: "h1" };
    const at = (seq: number) => 1_700_000_000_000 + seq * 1000;
    const events = await writeLog(ref, range(1, 30).map(at));
    expect(await small.readHistory(ref, { limit: 100 })).toEqual(events);
    expect(seqs(await small.readHistory(ref, { fromVersion: 5, toVersion: 17, limit: 100 }))).toEqual(
      range(5, 17),
    );
    expect(seqs(await small.readHistory(ref, { since: at(9), until: at(22), limit: 100 }))).toEqual(
      range(9, 22),
    );
    expect(
      seqs(await small.readHistory(ref, { fromVersion: 12, since: at(9), until: at(22), limit: 5 })),
    ).toEqual(range(12, 16));
    expect(seqs(await small.readHistory(ref, { since: at(28) + 1, limit: 100 }))).toEqual([29, 30]);
    expect(seqs(await small.readHistory(ref, { until: at(3), limit: 100 }))).toEqual([1, 2, 3]);
    expect(await small.readHistory(ref, { since: at(31), limit: 100 })).toEqual([]);
    expect(await small.readHistory(ref, { until: at(0), limit: 100 })).toEqual([]);
    expect(seqs(await small.readHistory(ref, { fromVersion: 25, limit: 3 }))).toEqual([25, 26, 27]);
  });

  it("finds events whose time stepped back (a clock step, a new owner) within the allowed skew", async () => {
    const ref = { type: `H${RUN}b`, id: "h2" };
    // Seq 1-8 at 100 s + seq; then the clock steps back 60 s for seq 9-20.
    const times = range(1, 20).map((seq) => (seq <= 8 ? 100_000 + seq * 1000 : 40_000 + seq * 1000));
    const events = await writeLog(ref, times);
    for (const [since, until] of [
      [45_000, 52_000],
      [100_000, 104_500],
      [49_000, 108_000],
      [0, 1_000_000],
    ] as const) {
      const expected = events.filter((e) => e.at >= since && e.at <= until);
      expect(await small.readHistory(ref, { since, until, limit: 100 })).toEqual(expected);
    }
  });

  it("serves GetHistory through the runtime", async () => {
    const ref = { type: Meter.type, id: `hist-${RUN}` };
    for (let i = 1; i <= 7; i++) await node.twins.invoke(ref, "add", { by: i });
    const all = await node.twins.history(ref, { limit: 100 });
    expect(all.map((e) => e.data["by"])).toEqual(range(1, 7));
    const slice = await node.twins.history(ref, { fromVersion: 3, toVersion: 5, limit: 100 });
    expect(seqs(slice)).toEqual([3, 4, 5]);
    const byTime = await node.twins.history(ref, { since: all[2]!.at, limit: 2 });
    expect(byTime.length).toBe(2);
    expect(byTime.every((e) => e.at >= all[2]!.at)).toBe(true);
  });
});

describe("cassandra telemetry", () => {
  const T0 = Date.UTC(2026, 2, 1); // on an hour boundary
  const MIN = 60_000;

  it("reads ranges across time windows and downsamples min/max/avg per interval", async () => {
    const ref = { type: Meter.type, id: `tel-${RUN}` };
    const other = { type: Meter.type, id: `tel-other-${RUN}` };
    // Every 10 minutes for 3 hours: temperature i, humidity 100 - i; plus a second sample at T0.
    const samples = range(0, 17).map((i) => ({
      at: T0 + i * 10 * MIN,
      metrics: { temperature: i, humidity: 100 - i },
    }));
    await node.twins.recordTelemetry(ref, [...samples].reverse());
    await node.twins.recordTelemetry(ref, [{ at: T0, metrics: { temperature: 50, humidity: 50 } }]);
    await node.twins.recordTelemetry(other, [{ at: T0 + MIN, metrics: { temperature: 999 } }]);

    const raw = await node.twins.telemetry(ref, { since: T0 + 30 * MIN, until: T0 + 120 * MIN });
    expect(raw.map((s) => (s.at - T0) / MIN)).toEqual([30, 40, 50, 60, 70, 80, 90, 100, 110]);
    expect(raw[0]?.metrics).toEqual({ temperature: 3, humidity: 97 });
    const limited = await node.twins.telemetry(ref, { since: T0, until: T0 + 180 * MIN, limit: 3 });
    expect(limited.map((s) => (s.at - T0) / MIN)).toEqual([0, 0, 10]);

    const hourly = await node.twins.telemetry(ref, {
      since: T0,
      until: T0 + 180 * MIN,
      intervalMs: 60 * MIN,
    });
    expect(hourly.map((s) => s.at)).toEqual([T0, T0 + 60 * MIN, T0 + 120 * MIN]);
    // Hour 0: temperatures 0..5 and 50; hour 1: 6..11; hour 2: 12..17.
    expect(hourly[0]?.metrics).toEqual({
      "temperature.min": 0,
      "temperature.max": 50,
      "temperature.avg": (0 + 1 + 2 + 3 + 4 + 5 + 50) / 7,
      "temperature.count": 7,
      "humidity.min": 50,
      "humidity.max": 100,
      "humidity.avg": (100 + 99 + 98 + 97 + 96 + 95 + 50) / 7,
      "humidity.count": 7,
    });
    expect(hourly[1]?.metrics).toMatchObject({
      "temperature.min": 6,
      "temperature.max": 11,
      "temperature.avg": 8.5,
      "temperature.count": 6,
    });
    expect(hourly[2]?.metrics).toMatchObject({
      "humidity.min": 83,
      "humidity.max": 88,
      "humidity.avg": 85.5,
    });

    // A range of years reads only the windows that hold data.
    const everything = await node.twins.telemetry(ref, { since: 0, until: T0 + 365 * 24 * 60 * MIN });
    expect(everything).toHaveLength(19);
    expect(await node.twins.telemetry(other, { since: 0, until: T0 + 180 * MIN })).toEqual([
      { ref: other, at: T0 + MIN, metrics: { temperature: 999 } },
    ]);
    expect(
      await node.twins.telemetry({ type: Meter.type, id: `none-${randomUUID()}` }, { since: 0, until: T0 }),
    ).toEqual([]);
  });
});
