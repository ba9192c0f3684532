/**
 * Engine bench: turns per second through the engine on the in-memory store, beside a bare
 * baseline (the same twin handler and fold called directly, no engine), and heap bytes per
 * resident idle thermostat at 100k and 1M twins, split into the twin's own state and the
 * runtime's overhead. Engine and baseline run interleaved, round by round, in one process.
 *
 * A third part measures what tracing costs a turn: the engine rounds run in separate processes
 * (tracing is process-wide), three ways alternating: tracing off (the default), tracing installed
 * without an exporter (trace context kept across every await, no span recorded: what a node with
 * `tracing.enabled` and no exporter does), and every turn and store call exported as a span (the
 * provider's `SimpleSpanProcessor` into an exporter that only counts them).
 *
 *   npm run bench:engine            (BENCH_QUICK=1 for a short run)
 */

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ExportResult } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { JsonObject } from "../runtime/core/json.ts";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { installTracing } from "../runtime/observability/tracing.ts";
import type { EventStore } from "../runtime/persistence/event-store.ts";
import { MemoryEventStore } from "../runtime/persistence/memory-store.ts";
import { Thermostat } from "../twins/thermostat.ts";
import { HandWrittenTwin } from "./hand-written-twin.ts";
import { histogram, note, percentiles, report, settledHeap, summary } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";

/** A store that keeps nothing: isolates the engine's own memory from the store's. */
class NullStore implements EventStore {
  async commit(commits: readonly unknown[]) {
    return commits.map(() => undefined);
  }
  async loadTwin() {
    return { snapshot: undefined, events: [], quarantine: undefined };
  }
  async readEvents() {
    return [];
  }
  async writeSnapshot() {}
  async readView() {
    return undefined;
  }
  async queryViews() {
    return { views: [] };
  }
  async readHistory() {
    return [];
  }
  async dueReminders() {
    return [];
  }
  async earliestReminders() {
    return new Map<number, number>();
  }
  async quarantine() {}
  async release() {}
  async appendTelemetry() {}
  async readTelemetry() {
    return [];
  }
  async twinsCreated() {
    return 0;
  }
  async close() {}
}

async function startNode(store: EventStore, maxResident: number): Promise<DoppelNode> {
  return DoppelNode.start(
    {
      nodeId: "bench",
      store: { kind: "memory" },
      grpc: { listen: false },
      limits: { maxResident, idleTimeout: "1h", snapshotEvery: 1000, mailboxSize: 10_000 },
    },
    { twins: [Thermostat], store, logger: silentLogger() },
  );
}

/** What one side of the turns bench does per report: the engine's `twins.report`, or the same-work baseline's. */
type Report = (id: string, patch: JsonObject) => Promise<unknown>;

/** Drives `total` reports into `twins` thermostats with `concurrency` in flight; the same driver for both sides. */
async function drive(report: Report, twins: number, total: number, concurrency: number) {
  const latency = histogram();
  let next = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        // Each pass over the twins moves the temperature one step (15–34 °C): heating turns on and off,
        // and above 30 °C the alarm is raised (a reminder set) and later cleared (cancelled).
        await report(`t${i % twins}`, { temperature: 15 + (Math.floor(i / twins) % 20) });
        latency.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  // CPU of the whole process (every thread: the garbage collector's too) per report: on a shared
  // machine less sensitive to the other processes than the wall-clock rate.
  const used = process.cpuUsage(cpu);
  return {
    turnsPerSecond: Math.round(total / seconds),
    cpuMicrosPerReport: Math.round(((used.user + used.system) / total) * 100) / 100,
    latencyMs: percentiles(latency),
  };
}

/** One engine round: a fresh node on the in-memory store (so every twin is activated once, as on the baseline). */
async function engineRound(twins: number, total: number, concurrency: number) {
  const node = await startNode(new MemoryEventStore(), twins * 2);
  const result = await drive(
    (id, patch) => node.twins.report({ type: "thermostat", id }, patch),
    twins,
    total,
    concurrency,
  );
  await node.stop();
  return result;
}

/** One baseline round: twins created on first report, the work done inline, each report answered by a settled promise. */
async function baselineRound(twins: number, total: number, concurrency: number) {
  const resident = new Map<string, HandWrittenTwin>();
  const report: Report = async (id, patch) => {
    let twin = resident.get(id);
    if (!twin) {
      twin = new HandWrittenTwin({ type: "thermostat", id });
      resident.set(id, twin);
    }
    twin.report(patch);
  };
  const result = await drive(report, twins, total, concurrency);
  const events = [...resident.values()].reduce((n, t) => n + t.log.length, 0);
  return { ...result, events };
}

/** Engine and baseline rounds interleaved (A B A B ...) in one process, after one warm-up round of each. */
async function turns(twins: number, total: number, concurrency: number, rounds: number) {
  await engineRound(twins, Math.min(total, 20_000), concurrency);
  await baselineRound(twins, Math.min(total, 20_000), concurrency);
  const engine: Awaited<ReturnType<typeof engineRound>>[] = [];
  const baseline: Awaited<ReturnType<typeof baselineRound>>[] = [];
  for (let r = 0; r < rounds; r++) {
    engine.push(await engineRound(twins, total, concurrency));
    baseline.push(await baselineRound(twins, total, concurrency));
    note(
      `  round ${r + 1}: engine ${engine.at(-1)!.turnsPerSecond} turns/s ${engine.at(-1)!.cpuMicrosPerReport} µs CPU/report p99 ${engine.at(-1)!.latencyMs.p99} ms; baseline ${baseline.at(-1)!.turnsPerSecond} turns/s ${baseline.at(-1)!.cpuMicrosPerReport} µs CPU/report p99 ${baseline.at(-1)!.latencyMs.p99} ms`,
    );
  }
  const side = (
    runs: { turnsPerSecond: number; cpuMicrosPerReport: number; latencyMs: ReturnType<typeof percentiles> }[],
  ) => ({
    turnsPerSecond: summary(runs.map((r) => r.turnsPerSecond)),
    cpuMicrosPerReport: summary(runs.map((r) => r.cpuMicrosPerReport)),
    p50Ms: summary(runs.map((r) => r.latencyMs.p50)),
    p99Ms: summary(runs.map((r) => r.latencyMs.p99)),
    rounds: runs,
  });
  const ratios = engine.map((e, i) => e.turnsPerSecond / baseline[i]!.turnsPerSecond);
  const cpuRatios = engine.map((e, i) => baseline[i]!.cpuMicrosPerReport / e.cpuMicrosPerReport);
  return {
    twins,
    total,
    concurrency,
    rounds,
    engine: side(engine),
    baseline: { ...side(baseline), eventsPerRound: baseline[0]?.events },
    engineVsBaseline: summary(ratios.map((x) => Math.round(x * 1000) / 1000)),
    /** The baseline's CPU per report over the engine's (1: the same CPU per report). */
    engineVsBaselineCpu: summary(cpuRatios.map((x) => Math.round(x * 1000) / 1000)),
  };
}

/** Heap per resident idle thermostat, with its own state measured apart. */
async function residentMemory(count: number) {
  const before = settledHeap();
  const node = await startNode(new NullStore(), count + 10);
  const afterStart = settledHeap();
  const batch = 2000;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, (_, j) =>
        node.twins.report(
          { type: "thermostat", id: `t${String(i + j).padStart(7, "0")}` },
          { temperature: 21 },
        ),
      ),
    );
  }
  await node.engine.committer.whenIdle();
  const resident = node.engine.catalog.size;
  const withTwins = settledHeap();
  // The twins' own state: the same state, reported and desired objects, held alone.
  const sample = node.engine.resident("thermostat/t0000000")!.committedData;
  const own: unknown[] = new Array(count);
  const ownBefore = settledHeap();
  for (let i = 0; i < count; i++) own[i] = structuredClone([sample.state, sample.reported, sample.desired]);
  const ownAfter = settledHeap();
  const perTwin = (withTwins - afterStart) / resident;
  const ownPerTwin = (ownAfter - ownBefore) / count;
  own.length = 0;
  await node.stop();
  return {
    resident,
    heapPerTwinBytes: Math.round(perTwin),
    ownStatePerTwinBytes: Math.round(ownPerTwin),
    runtimeOverheadPerTwinBytes: Math.round(perTwin - ownPerTwin),
    nodeBaseHeapBytes: afterStart - before,
  };
}

/** How a tracing process runs: tracing off, installed without an exporter, or exporting every span. */
type TracingMode = "off" | "context" | "spans";
const TRACING_MODES: readonly TracingMode[] = ["off", "context", "spans"];

/** Counts the spans it is given and drops them (the cost measured is making and ending them). */
class CountingExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

/** Engine rounds in a process whose tracing is set up as `mode`; after one warm-up round. */
async function tracingRounds(mode: TracingMode, twins: number, total: number, rounds: number) {
  const exporter = new CountingExporter();
  if (mode === "context") installTracing();
  if (mode === "spans") installTracing(exporter);
  await engineRound(twins, Math.min(total, 20_000), 512);
  const runs: Awaited<ReturnType<typeof engineRound>>[] = [];
  for (let r = 0; r < rounds; r++) runs.push(await engineRound(twins, total, 512));
  return {
    mode,
    turnsPerSecond: summary(runs.map((r) => r.turnsPerSecond)).median,
    cpuMicrosPerReport: summary(runs.map((r) => r.cpuMicrosPerReport)).median,
    p99Ms: summary(runs.map((r) => r.latencyMs.p99)).median,
    spansPerReport: Math.round((exporter.spans / (rounds * total + Math.min(total, 20_000))) * 100) / 100,
  };
}

/**
 * Each phase runs in its own process, so one phase's heap (a million twins, a large in-memory
 * event log) never slows or skews another. The parent collects the phases' results.
 */
const phase = process.argv[2];
if (phase === "memory") {
  const count = Number(process.argv[3]);
  process.stdout.write(`${JSON.stringify(await residentMemory(count))}\n`);
} else if (phase === "tracing") {
  const [mode, twins, total, rounds] = process.argv.slice(3);
  process.stdout.write(
    `${JSON.stringify(await tracingRounds(mode as TracingMode, Number(twins), Number(total), Number(rounds)))}\n`,
  );
} else if (phase === "turns") {
  const twins = Number(process.argv[3]);
  const total = Number(process.argv[4]);
  const rounds = Number(process.argv[5]);
  process.stdout.write(`${JSON.stringify(await turns(twins, total, 512, rounds))}\n`);
} else {
  const run = (args: string[]): Record<string, unknown> => {
    const out = execFileSync(
      process.execPath,
      [
        "--expose-gc",
        "--max-old-space-size=12288",
        "--conditions=source",
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        ...args,
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
    );
    return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
  };
  const memory: Record<string, unknown> = {};
  for (const count of quick ? [10_000, 100_000] : [100_000, 1_000_000]) {
    note(`memory: ${count} resident thermostats...`);
    memory[String(count)] = run(["memory", String(count)]);
    note(`  ${JSON.stringify(memory[String(count)])}`);
  }
  const turnTwins = quick ? 1000 : 10_000;
  const turnTotal = quick ? 50_000 : 400_000;
  const rounds = quick ? 3 : 5;
  note(
    `turns: ${turnTotal} reports over ${turnTwins} twins, ${rounds} rounds of engine and baseline interleaved...`,
  );
  const result = run(["turns", String(turnTwins), String(turnTotal), String(rounds)]) as Awaited<
    ReturnType<typeof turns>
  >;
  note(
    `  median engine ${result.engine.turnsPerSecond.median} turns/s, baseline ${result.baseline.turnsPerSecond.median} turns/s, ratio ${result.engineVsBaseline.median} (CPU per report ${result.engineVsBaselineCpu.median})`,
  );
  // Tracing's cost: one process per mode and round, the order rotating round by round.
  const tracingProcesses = quick ? 1 : 3;
  note(
    `tracing: ${tracingProcesses} × off / context / spans, each process ${turnTotal} reports × 2 rounds...`,
  );
  type TracingRun = Awaited<ReturnType<typeof tracingRounds>>;
  const byMode = new Map<TracingMode, TracingRun[]>(TRACING_MODES.map((m) => [m, []]));
  for (let r = 0; r < tracingProcesses; r++) {
    for (let k = 0; k < TRACING_MODES.length; k++) {
      const mode = TRACING_MODES[(k + r) % TRACING_MODES.length]!;
      const one = run(["tracing", mode, String(turnTwins), String(turnTotal), "2"]) as TracingRun;
      byMode.get(mode)!.push(one);
      note(`  ${mode}: ${one.turnsPerSecond} turns/s, ${one.cpuMicrosPerReport} µs CPU/report`);
    }
  }
  const tracingSide = (mode: TracingMode) => {
    const runs = byMode.get(mode)!;
    return {
      turnsPerSecond: summary(runs.map((r) => r.turnsPerSecond)),
      cpuMicrosPerReport: summary(runs.map((r) => r.cpuMicrosPerReport)),
      p99Ms: summary(runs.map((r) => r.p99Ms)),
      spansPerReport: runs[0]?.spansPerReport,
    };
  };
  // Per round: each traced process against the untraced one of the same round.
  const vsOff = (mode: TracingMode) =>
    summary(
      byMode
        .get(mode)!
        .map((r, i) => Math.round((r.turnsPerSecond / byMode.get("off")![i]!.turnsPerSecond) * 1000) / 1000),
    );
  const tracing = {
    processes: tracingProcesses,
    off: tracingSide("off"),
    context: tracingSide("context"),
    spans: tracingSide("spans"),
    contextVsOff: vsOff("context"),
    spansVsOff: vsOff("spans"),
  };
  note(
    `  median turns/s: off ${tracing.off.turnsPerSecond.median}, context ${tracing.context.turnsPerSecond.median} (${tracing.contextVsOff.median}×), spans ${tracing.spans.turnsPerSecond.median} (${tracing.spansVsOff.median}×)`,
  );
  report("engine", {
    command: quick ? "BENCH_QUICK=1 npm run bench:engine" : "npm run bench:engine",
    turns: { ...result, store: "memory" },
    engineVsBaseline: result.engineVsBaseline.median,
    engineVsBaselineCpu: result.engineVsBaselineCpu.median,
    residentMemory: memory,
    tracing,
    targetOverheadBytes: 1024,
    notes:
      "baseline = the same Thermostat class's schema, onReported and apply, the same shadow merge, every event appended to an in-memory log, called directly (no mailboxes, activation, group commit); rounds interleaved engine, baseline, engine, ... after one warm-up round each; spread = (max - min) / median; heap per twin = (heap with N resident idle thermostats − heap before) / N; own state = the same state, reported and desired objects held alone",
  });
}
