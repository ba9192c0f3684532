/**
 * Engine bench: turns per second through the engine on the in-memory store, beside a bare
 * baseline (the same twin handler and fold called directly, no engine), and heap bytes per
 * resident idle thermostat at 100k and 1M twins, split into the twin's own state and the
 * runtime's overhead.
 *
 *   npm run bench:engine            (BENCH_QUICK=1 for a short run)
 */

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import type { EventStore } from "../runtime/persistence/event-store.ts";
import { MemoryEventStore } from "../runtime/persistence/memory-store.ts";
import { Thermostat } from "../twins/thermostat.ts";
import { histogram, note, percentiles, report, settledHeap } from "./lib.ts";

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
  async quarantine() {}
  async release() {}
  async appendTelemetry() {}
  async readTelemetry() {
    return [];
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

/** Reports into `twins` thermostats with `concurrency` in flight, `total` turns. */
async function turns(twins: number, total: number, concurrency: number) {
  const node = await startNode(new MemoryEventStore(), twins * 2);
  const latency = histogram();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        await node.twins.report({ type: "thermostat", id: `t${i % twins}` }, { temperature: 15 + (i % 20) });
        latency.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await node.stop();
  return {
    turnsPerSecond: Math.round(total / seconds),
    latencyMs: percentiles(latency),
    twins,
    total,
    concurrency,
  };
}

/** The same work with no engine: validate the patch, run the handler logic via fold, nothing else. */
function bareBaseline(twins: number, total: number) {
  const instances = Array.from({ length: twins }, () => new Thermostat());
  const states = instances.map((t) => t.initialState());
  const started = performance.now();
  for (let i = 0; i < total; i++) {
    const k = i % twins;
    const temperature = 15 + (i % 20);
    Thermostat.reported.parse({ temperature });
    const heating = temperature < states[k]!.setPoint - 0.5;
    if (heating !== states[k]!.heatingDemand) {
      states[k] = instances[k]!.apply(states[k]!, { type: "heatingDecided", heating, temperature });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return { turnsPerSecond: Math.round(total / seconds) };
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

/**
 * Each phase runs in its own process, so one phase's heap (a million twins, a large in-memory
 * event log) never slows or skews another. The parent collects the phases' results.
 */
const phase = process.argv[2];
if (phase === "memory") {
  const count = Number(process.argv[3]);
  process.stdout.write(`${JSON.stringify(await residentMemory(count))}\n`);
} else if (phase === "turns") {
  const twins = Number(process.argv[3]);
  const total = Number(process.argv[4]);
  const engine = await turns(twins, total, 512);
  const baseline = bareBaseline(twins, total);
  process.stdout.write(`${JSON.stringify({ engine, baseline })}\n`);
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
  note(`turns: ${turnTotal} reports over ${turnTwins} twins...`);
  const { engine, baseline } = run(["turns", String(turnTwins), String(turnTotal)]) as {
    engine: Awaited<ReturnType<typeof turns>>;
    baseline: ReturnType<typeof bareBaseline>;
  };
  note(
    `  ${engine.turnsPerSecond} turns/s, p99 ${engine.latencyMs.p99} ms; bare ${baseline.turnsPerSecond} turns/s`,
  );
  report("engine", {
    command: "npm run bench:engine",
    turns: { ...engine, store: "memory" },
    bareBaseline: baseline,
    engineVsBare: Math.round((engine.turnsPerSecond / baseline.turnsPerSecond) * 1000) / 1000,
    residentMemory: memory,
    targetOverheadBytes: 1024,
    notes:
      "bare baseline = the same schema validation and fold called directly, no engine; heap per twin = (heap with N resident idle thermostats − heap before) / N; own state = the same state, reported and desired objects held alone",
  });
}
