import { type EventRecord, InvalidArgument, NotFound } from "doppel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { HistoryQuery, RemoteEvent } from "../../runtime/grpc/client.ts";
import { type Harness, overrideApi, startHarness } from "./harness.ts";

const t1 = { type: "thermostat", id: "t1" };

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function remote({ commitId: _, ...event }: EventRecord): RemoteEvent {
  return event;
}

describe("gateway history stream", () => {
  let h: Harness;
  let reads: number;
  let all: EventRecord[];
  beforeEach(async () => {
    reads = 0;
    h = await startHarness({
      gateway: { historyPageSize: 3 },
      wrapApi: (api) =>
        overrideApi(api, {
          history: (ref, range) => {
            reads++;
            return api.history(ref, range);
          },
        }),
    });
    // Twelve reports a minute apart, alternating cold and hot: several events each, over many pages.
    for (let i = 0; i < 12; i++) {
      await h.test.twins.report(t1, { temperature: i % 2 === 0 ? 15 : 35, heating: i % 2 === 0 });
      await h.test.advance("1m");
    }
    all = await h.test.twins.history(t1, { limit: 10_000 });
    reads = 0;
  });
  afterEach(async () => {
    await h.stop();
  });

  it("streams the whole history oldest first, across many pages", async () => {
    expect(all.length).toBeGreaterThan(9);
    expect(await collect(h.client.history(t1))).toEqual(all.map(remote));
    expect(reads).toBe(Math.ceil((all.length + 1) / 3));
  });

  it.each<[string, HistoryQuery, (e: EventRecord, start: number) => boolean]>([
    ["a version range", { fromVersion: 2, toVersion: 11 }, (e) => e.seq >= 2 && e.seq <= 11],
    ["an open-ended version range", { fromVersion: 7 }, (e) => e.seq >= 7],
    [
      "a time range",
      { since: Date.UTC(2026, 0, 1, 0, 3), until: Date.UTC(2026, 0, 1, 0, 8) },
      (e) => e.at >= Date.UTC(2026, 0, 1, 0, 3) && e.at <= Date.UTC(2026, 0, 1, 0, 8),
    ],
    [
      "a version and time range together",
      { fromVersion: 5, until: Date.UTC(2026, 0, 1, 0, 9) },
      (e) => e.seq >= 5 && e.at <= Date.UTC(2026, 0, 1, 0, 9),
    ],
  ])("streams %s", async (_what, range, keep) => {
    const expected = all.filter((e) => keep(e, 0)).map(remote);
    expect(expected.length).toBeGreaterThan(3);
    expect(await collect(h.client.history(t1, range))).toEqual(expected);
  });

  it("stops at the limit, even in the middle of a page", async () => {
    expect(await collect(h.client.history(t1, { limit: 5 }))).toEqual(all.slice(0, 5).map(remote));
    expect(await collect(h.client.history(t1, { fromVersion: 3, limit: 7 }))).toEqual(
      all.slice(2, 9).map(remote),
    );
  });

  it("streams nothing for a twin without events or an empty range", async () => {
    expect(await collect(h.client.history({ type: "thermostat", id: "quiet" }))).toEqual([]);
    expect(await collect(h.client.history(t1, { fromVersion: 1000 }))).toEqual([]);
  });

  it("fails with InvalidArgument for an invalid id and NotFound for an unknown type", async () => {
    await expect(collect(h.client.history({ type: "thermostat", id: "a>b" }))).rejects.toThrow(
      InvalidArgument,
    );
    await expect(collect(h.client.history({ type: "boiler", id: "b1" }))).rejects.toThrow(NotFound);
  });

  it("stops reading pages when the consumer leaves early", async () => {
    let seen = 0;
    for await (const _ of h.client.history(t1)) {
      if (++seen === 2) break;
    }
    expect(seen).toBe(2);
    // The server still serves, and a full read works afterwards.
    expect(await collect(h.client.history(t1))).toHaveLength(all.length);
  });
});

describe("gateway telemetry stream", () => {
  let h: Harness;
  const start = Date.UTC(2026, 0, 1);
  beforeEach(async () => {
    h = await startHarness();
    // One sample every 10 s for 5 minutes, temperature rising by 0.1 each time.
    await h.test.twins.recordTelemetry(
      t1,
      Array.from({ length: 30 }, (_, i) => ({
        at: start - 300_000 + i * 10_000,
        metrics: { temp: 20 + i / 10 },
      })),
    );
  });
  afterEach(async () => {
    await h.stop();
  });

  it("streams raw samples in a time range, up to now by default", async () => {
    const samples = await collect(h.client.telemetry(t1, { since: start - 300_000 }));
    expect(samples).toHaveLength(30);
    expect(samples[0]).toEqual({ at: start - 300_000, metrics: { temp: 20 } });
    const window = await collect(h.client.telemetry(t1, { since: start - 60_000, until: start - 30_000 }));
    expect(window.map((s) => s.at)).toEqual([start - 60_000, start - 50_000, start - 40_000]);
  });

  it("stops at the limit", async () => {
    expect(await collect(h.client.telemetry(t1, { since: 0, limit: 4 }))).toHaveLength(4);
  });

  it("downsamples into per-interval min, max, avg and count", async () => {
    const buckets = await collect(h.client.telemetry(t1, { since: 0, intervalMs: 60_000 }));
    expect(buckets).toHaveLength(5);
    expect(buckets[0]?.at).toBe(start - 300_000);
    expect(buckets[0]?.metrics["temp.count"]).toBe(6);
    expect(buckets[0]?.metrics["temp.min"]).toBeCloseTo(20);
    expect(buckets[0]?.metrics["temp.max"]).toBeCloseTo(20.5);
    expect(buckets[0]?.metrics["temp.avg"]).toBeCloseTo(20.25);
  });

  it("refuses a zero interval and a reversed range with InvalidArgument", async () => {
    await expect(collect(h.client.telemetry(t1, { since: 0, intervalMs: 0 }))).rejects.toThrow(
      InvalidArgument,
    );
    await expect(collect(h.client.telemetry(t1, { since: start, until: start - 1 }))).rejects.toThrow(
      InvalidArgument,
    );
  });
});
