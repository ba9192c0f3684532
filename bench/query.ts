/**
 * Query bench: how long a SQLite view query over a whole type (22k twins, a filter matching 1 in
 * 10) blocks the node's event loop, scanned in slices (the store's default) beside the same
 * scan in one go (`scanSliceMs: Infinity`, how the store worked before), interleaved A/B in one
 * run. Measured as the longest gap between two turns of a 1 ms timer, and by counting those turns; also
 * each query's own duration, and the longest gap over 300 ms of doing nothing (the loaded
 * machine's noise floor: preemption by other processes, GC), and perf_hooks'
 * monitorEventLoopDelay p99 while queries run.
 *
 *   npm run bench:query            (BENCH_TWINS=22000, BENCH_ROUNDS=6)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { TwinCommit } from "../runtime/core/records.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import { note, report } from "./lib.ts";

const TWINS = Number(process.env["BENCH_TWINS"] ?? 22_000);
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 6);

function commitFor(i: number): TwinCommit {
  const ref = { type: "thermostat", id: `t${String(i).padStart(6, "0")}` };
  const reported = { temperature: 15 + (i % 100) / 10, heating: i % 2 === 0, firmware: "1.4.2" };
  return {
    ref,
    shard: i % 256,
    expectedSeq: 0,
    events: [
      {
        seq: 1,
        type: "$reported",
        data: { patch: reported },
        at: 1_000,
        commitId: `c${i}`,
        writer: { node: "bench", epoch: 1 },
      },
    ],
    view: {
      type: ref.type,
      id: ref.id,
      version: 1,
      state: { setPoint: 21, heatingDemand: i % 3 === 0, alarm: "none", boostUntil: null },
      reported,
      desired: {},
      delta: {},
      createdAt: 1_000,
      updatedAt: 1_000,
    },
    reminders: { set: [], clear: [] },
  };
}

async function measure(store: SqliteEventStore) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  let last = performance.now();
  let longestStall = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestStall = Math.max(longestStall, now - last);
    last = now;
    ticks++;
  }, 1);
  delay.enable();
  const started = performance.now();
  last = started;
  const page = await store.queryViews("thermostat", {
    limit: Number.POSITIVE_INFINITY,
    match: (view) => (view.reported["temperature"] as number) >= 24,
  });
  const ended = performance.now();
  longestStall = Math.max(longestStall, ended - last);
  delay.disable();
  clearInterval(timer);
  return {
    ms: ended - started,
    matched: page.views.length,
    /** Longest time between two turns of a 1 ms timer while the query ran (the whole query when none ran). */
    longestStallMs: longestStall,
    /** monitorEventLoopDelay's p99 (no samples when the loop never turned: 0). */
    p99DelayMs: delay.count > 0 ? delay.percentile(99) / 1e6 : 0,
    timerTurns: ticks,
  };
}

/** The same over `ms` of doing nothing (the loaded machine's noise floor: preemption, GC). */
async function idle(ms: number) {
  let last = performance.now();
  let longestStall = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestStall = Math.max(longestStall, now - last);
    last = now;
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, ms));
  clearInterval(timer);
  return { longestStallMs: longestStall };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-bench-query-"));
const file = path.join(dir, "store.db");
try {
  const writer = new SqliteEventStore({ path: file, synchronous: "normal" });
  for (let i = 0; i < TWINS; i += 1000) {
    await writer.commit(Array.from({ length: Math.min(1000, TWINS - i) }, (_, k) => commitFor(i + k)));
  }
  await writer.close();
  note(`${TWINS} twins written`);
  const sliced = new SqliteEventStore({ path: file });
  const whole = new SqliteEventStore({ path: file, scanSliceMs: Number.POSITIVE_INFINITY });
  const runs: Record<"sliced" | "whole", Awaited<ReturnType<typeof measure>>[]> = { sliced: [], whole: [] };
  const idleDelays: number[] = [];
  await measure(sliced); // warm-up (page cache, JIT)
  await measure(whole);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, store] of round % 2 === 0
      ? ([
          ["sliced", sliced],
          ["whole", whole],
        ] as const)
      : ([
          ["whole", whole],
          ["sliced", sliced],
        ] as const)) {
      const run = await measure(store);
      runs[name].push(run);
      note(`${name}: ${run.ms.toFixed(1)} ms, longest stall ${run.longestStallMs.toFixed(1)} ms`);
    }
    idleDelays.push((await idle(300)).longestStallMs);
  }
  const summary = (list: Awaited<ReturnType<typeof measure>>[]) => {
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const round1 = (n: number) => Math.round(n * 10) / 10;
    return {
      matched: list[0]?.matched,
      queryMsMedian: round1(median(list.map((r) => r.ms))),
      longestStallMsMedian: round1(median(list.map((r) => r.longestStallMs))),
      longestStallMsWorst: round1(Math.max(...list.map((r) => r.longestStallMs))),
      timerTurnsMedian: median(list.map((r) => r.timerTurns)),
      p99DelayMsMedian: round1(median(list.map((r) => r.p99DelayMs))),
    };
  };
  await sliced.close();
  await whole.close();
  report("query", {
    twins: TWINS,
    rounds: ROUNDS,
    sliced: summary(runs.sliced),
    wholeScanBaseline: summary(runs.whole),
    idleLongestStallMsMedian:
      Math.round((idleDelays.sort((a, b) => a - b)[Math.floor(idleDelays.length / 2)] ?? 0) * 10) / 10,
  });
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
