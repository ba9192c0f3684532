/**
 * Ingest bench: device reports through NATS JetStream into persisted twins, beside a hand-written
 * pipeline doing the same work, interleaved round by round (A B A B ...) in one run.
 *
 * - A, Doppel: a node in its own process, started with the real CLI (`doppel start --nats URL`,
 *   SQLite with fsync on every commit, or `BENCH_STORE=cassandra`; 256 shards unless
 *   `BENCH_SHARDS`), consuming the ingress stream through its one per-node consumer.
 * - B, the baseline (`bench/ingest-baseline.ts`), also its own process: the same stream settings
 *   and consumer layout (one consumer filtered on the S shard subjects, the same maxAckPending,
 *   ackWait and pull batch), the same Thermostat work (`HandWrittenTwin`), the same store class
 *   and durability (`SqliteEventStore` synchronous=FULL, or `CassandraEventStore`), group-committed,
 *   acked after the commit.
 * - The same messages on both sides (JetStream-published with a message id, `WINDOW`
 *   unacknowledged at once, over `DEVICES` twins). **Throughput**: the clock stops when the
 *   stream is empty again (every report acknowledged, which both do only after the commit).
 *   **Latency**, the same end point on both sides: a probe report published (JetStream publish
 *   acknowledged) → its value visible in the store's view of the twin (`readView`, polled by this
 *   process on a store of its own over the side's database), under a background load of half the
 *   Doppel side's first-round throughput, offered to both evenly (the reports due every 5 ms;
 *   `BENCH_BURST_MS=100` for a tenth of a second's at once).
 *
 *   npm run bench:ingest     (DOPPEL_NATS to use your server; else scripts/infra/nats.sh up;
 *                             BENCH_QUICK=1 for a short run; BENCH_STORE=cassandra for the
 *                             Cassandra store, with DOPPEL_CASSANDRA or scripts/infra/cassandra.sh up,
 *                             keyspaces <DOPPEL_TEST_KEYSPACE_PREFIX>bench_ingest and ..._bare;
 *                             BENCH_SHARDS=N for N shards, default 256; BENCH_ROUNDS, default 3;
 *                             BENCH_CPU_PROF=DIR for a CPU profile of the node; BENCH_STAGES=1
 *                             for the probes' latency by stage on both sides, bench/stages.ts;
 *                             BENCH_BURST_MS, default 5: how often the background load is offered)
 *
 * Per round it also reports each side's process CPU per report (µs, from /proc) and the cores
 * the side used during the probes: the machine is shared, so the load average is printed too.
 * On Cassandra, each side's store work per report of the throughput phase, from the server's own
 * per-table counters (`system_views.local_read_latency` / `local_write_latency` of the side's
 * keyspace): commits (writes of `views`, one per commit), all writes, all reads.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsTransport } from "../cluster/transport/nats.ts";
import type { TwinRef } from "../runtime/core/ids.ts";
import { CassandraEventStore } from "../runtime/persistence/cassandra/store.ts";
import type { EventStore } from "../runtime/persistence/event-store.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import {
  BARE_PREFIX,
  BARE_STREAM,
  histogram,
  loadAverage,
  note,
  percentiles,
  processCpuMs,
  report,
  startDoppelNode,
  streamEmpty,
  summary,
  windowed,
} from "./lib.ts";
import { StageLog, stageNow } from "./stages.ts";

const quick = process.env["BENCH_QUICK"] === "1";
/** `BENCH_STORE=cassandra` runs the node on Cassandra (DOPPEL_CASSANDRA, else the script's server). */
const STORE = process.env["BENCH_STORE"] === "cassandra" ? "cassandra" : "sqlite";
const CASSANDRA = process.env["DOPPEL_CASSANDRA"] ?? "127.0.0.1:19042";
const KEYSPACE = `${process.env["DOPPEL_TEST_KEYSPACE_PREFIX"] ?? ""}bench_ingest`;
const STORE_ARGS = (dataDir: string): string[] => {
  if (STORE === "sqlite") return ["--store", "sqlite", "--data", dataDir];
  const config = join(dataDir, "cassandra.json");
  writeFileSync(config, JSON.stringify({ store: { kind: "cassandra", keyspace: KEYSPACE } }));
  return ["--config", config, "--cassandra", CASSANDRA, "--data", dataDir];
};
const DEVICES = quick ? 200 : 1000;
const REPORTS = quick ? 10_000 : 30_000;
const WINDOW = 1000;
const PROBES = quick ? 100 : 200;
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? (quick ? 2 : 3));
/** The shard count of the node (`--shards`) and of the baseline's stream. */
const SHARDS = Number(process.env["BENCH_SHARDS"] ?? 256);
if (!Number.isInteger(SHARDS) || SHARDS < 1) throw new Error(`BENCH_SHARDS must be a positive integer`);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** `BENCH_STAGES=1`: the probes' latency by stage on both sides (see `bench/stages.ts`). */
const STAGES = process.env["BENCH_STAGES"] === "1";
/** How often the latency phase's background load is offered, ms (see `latency`). */
const BURST_MS = Number(process.env["BENCH_BURST_MS"] ?? 5);
if (!(BURST_MS >= 1)) throw new Error("BENCH_BURST_MS must be a number of milliseconds, at least 1");
const PROBE_ID = "bench-probe";
/** What the side processes get for the stage clock (their stderr is then read by a StageLog). */
const STAGE_ENV: Record<string, string> = STAGES ? { DOPPEL_STAGE_CLOCK: PROBE_ID } : {};
const WAKE = new Int32Array(new SharedArrayBuffer(4));
/** Between two polls of the store: ~0.2 ms asleep, then a turn of the event loop. */
async function pollPause(): Promise<void> {
  Atomics.wait(WAKE, 0, 0, 0.2);
  await new Promise((resolve) => setImmediate(resolve));
}

function natsServer(): { url: string; started: boolean } {
  if (process.env["DOPPEL_NATS"]) return { url: process.env["DOPPEL_NATS"], started: false };
  const status = spawnSync("bash", ["scripts/infra/nats.sh", "status"], { cwd: ROOT, stdio: "ignore" });
  if (status.status !== 0) {
    note("starting nats-server (scripts/infra/nats.sh up)...");
    const up = spawnSync("bash", ["scripts/infra/nats.sh", "up"], { cwd: ROOT, stdio: "inherit" });
    if (up.status !== 0) throw new Error("scripts/infra/nats.sh up failed");
    return { url: scriptNatsUrl(), started: true };
  }
  return { url: scriptNatsUrl(), started: false };
}

/** The URL of the project script's server (it honours DOPPEL_NATS_PORT), from `nats.sh env`. */
function scriptNatsUrl(): string {
  const env = spawnSync("bash", ["scripts/infra/nats.sh", "env"], { cwd: ROOT, encoding: "utf8" }).stdout;
  const url = /^export DOPPEL_NATS=(\S+)$/m.exec(env)?.[1];
  if (url === undefined) throw new Error(`scripts/infra/nats.sh env printed no DOPPEL_NATS: ${env}`);
  return url;
}

function startNode(nats: string, dataDir: string) {
  return startDoppelNode(
    [
      // BENCH_CPU_PROF=DIR: the node writes a CPU profile there when it stops (node --cpu-prof).
      ...(process.env["BENCH_CPU_PROF"]
        ? ["--cpu-prof", "--cpu-prof-dir", process.env["BENCH_CPU_PROF"]]
        : []),
      "bin/doppel.js",
      "start",
      "--nats",
      nats,
      ...STORE_ARGS(dataDir),
      "--shards",
      String(SHARDS),
    ],
    STAGES ? { env: STAGE_ENV, stderr: "pipe" } : {},
  );
}

/** Starts the hand-written pipeline; resolves once it consumes. */
async function startBaseline(nats: string, dataDir: string): Promise<ChildProcess> {
  const storeArgs =
    STORE === "sqlite" ? ["sqlite", join(dataDir, "bare.db")] : ["cassandra", CASSANDRA, `${KEYSPACE}_bare`];
  const child = spawn(
    process.execPath,
    [
      "--conditions=source",
      "--import",
      "tsx",
      "bench/ingest-baseline.ts",
      nats,
      String(SHARDS),
      ...storeArgs,
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", STAGES ? "pipe" : "inherit"],
      env: { ...process.env, ...STAGE_ENV },
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("READY")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`baseline exited (${code}) before it was ready`)));
  });
  return child;
}

async function openReader(dataDir: string, side: "doppel" | "baseline"): Promise<EventStore> {
  if (STORE === "sqlite")
    return new SqliteEventStore({ path: join(dataDir, side === "doppel" ? "doppel.db" : "bare.db") });
  return CassandraEventStore.open({
    contactPoints: [CASSANDRA],
    localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
    keyspace: side === "doppel" ? KEYSPACE : `${KEYSPACE}_bare`,
  });
}

interface Side {
  readonly name: "doppel" | "baseline";
  readonly stream: string;
  /** The side's Cassandra keyspace (`BENCH_STORE=cassandra`). */
  readonly keyspace: string;
  readonly subject: (id: string) => string;
  readonly reader: EventStore;
  /** The side's process (its CPU time is read from /proc). */
  readonly pid: number | undefined;
  /** The probes' stage stamps (`BENCH_STAGES=1`). */
  readonly stages: StageLog;
}

const { url, started } = natsServer();
const dataDir = mkdtempSync(join(tmpdir(), "doppel-bench-ingest-"));
const wire = await NatsTransport.connect({ servers: url, name: "bench-devices" });
const jsm = await jetstreamManager(wire.connection);
await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);
const cassandraAdmin =
  STORE === "cassandra"
    ? new (await import("cassandra-driver")).default.Client({
        contactPoints: [CASSANDRA],
        localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
      })
    : undefined;
if (cassandraAdmin) {
  await cassandraAdmin.connect();
  for (const ks of [KEYSPACE, `${KEYSPACE}_bare`])
    await cassandraAdmin.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
}

/** Cassandra's own request counters for one keyspace (single node: every replica is this one). */
async function storeCounts(keyspace: string): Promise<{ commits: number; writes: number; reads: number }> {
  if (!cassandraAdmin) return { commits: 0, writes: 0, reads: 0 };
  const counts = async (table: string) =>
    (
      await cassandraAdmin.execute(
        `SELECT table_name, count FROM system_views.${table} WHERE keyspace_name = ?`,
        [keyspace],
        { prepare: true },
      )
    ).rows.map((row) => ({ table: String(row["table_name"]), count: Number(row["count"]) }));
  const writes = await counts("local_write_latency");
  const reads = await counts("local_read_latency");
  const sum = (rows: { count: number }[]) => rows.reduce((n, row) => n + row.count, 0);
  return {
    commits: writes.find((row) => row.table === "views")?.count ?? 0,
    writes: sum(writes),
    reads: sum(reads),
  };
}
note(`node: doppel start --nats ${url} (${STORE}, ${SHARDS} shards)...`);
const node = await startNode(url, dataDir);
note(`  ready in ${node.startMs} ms; baseline: bench/ingest-baseline.ts...`);
const baseline = await startBaseline(url, dataDir);
const encoder = new TextEncoder();

try {
  const sides: Side[] = [
    {
      name: "doppel",
      stream: "DOPPEL_INGRESS",
      keyspace: KEYSPACE,
      subject: (id) => `doppel.dev.thermostat.${id}.reported`,
      reader: await openReader(dataDir, "doppel"),
      pid: node.child.pid,
      stages: new StageLog(),
    },
    {
      name: "baseline",
      stream: BARE_STREAM,
      keyspace: `${KEYSPACE}_bare`,
      subject: (id) => `${BARE_PREFIX}.dev.thermostat.${id}.reported`,
      reader: await openReader(dataDir, "baseline"),
      pid: baseline.pid,
      stages: new StageLog(),
    },
  ];
  if (STAGES) {
    sides[0]!.stages.watch(node.child);
    sides[1]!.stages.watch(baseline);
  }
  let sent = 0;
  const publish = (side: Side, id: string, patch: object) =>
    wire.publishDurable(side.subject(id), encoder.encode(JSON.stringify(patch)), {
      messageId: `m${sent++}`,
      timeoutMs: 60_000,
    });

  /** Reports/s of `total` reports, the side's process CPU per report (µs), its store work per report (Cassandra). */
  const throughput = async (side: Side, total: number) => {
    const store0 = await storeCounts(side.keyspace);
    const t0 = performance.now();
    const cpu0 = processCpuMs(side.pid);
    await windowed(total, WINDOW, (i) =>
      publish(side, `bench-${i % DEVICES}`, { temperature: 15 + (i % 200) / 10, heating: i % 2 === 0 }),
    );
    await streamEmpty(jsm, side.stream);
    const cpu1 = processCpuMs(side.pid);
    const rate = Math.round(total / ((performance.now() - t0) / 1000));
    const store1 = await storeCounts(side.keyspace);
    const perReport = (key: keyof typeof store0) =>
      Math.round(((store1[key] - store0[key]) / total) * 100) / 100;
    return {
      rate,
      cpuUsPerReport:
        cpu0 === undefined || cpu1 === undefined ? undefined : Math.round(((cpu1 - cpu0) * 1000) / total),
      storePerReport: cassandraAdmin
        ? { commits: perReport("commits"), writes: perReport("writes"), reads: perReport("reads") }
        : undefined,
    };
  };

  /**
   * Probe reports (publish → visible in the store) under `rate` background reports/s, offered on a
   * schedule: every `BURST_MS` the reports due by then (5 ms: 5 or 6 at a time at 1,000/s, an even
   * load; `BENCH_BURST_MS=100` offers a tenth of a second's reports at once, the bench before
   * 2026-12-08, where a probe behind a burst waits for ~100 fsyncs of nats-server). A burst still
   * unacknowledged when the next is due delays it, and the next carries what fell due meanwhile.
   * The store is polled every ~0.2 ms (a wait that leaves the CPU to the side being measured, not
   * a spin), so the end point is the same on both sides.
   */
  const latency = async (side: Side, rate: number, into: ReturnType<typeof histogram>) => {
    let stop = false;
    let i = 0;
    const background = (async () => {
      const started = performance.now();
      let offered = 0;
      while (!stop) {
        const due = Math.max(offered + 1, Math.floor(((performance.now() - started) / 1000) * rate));
        const burst: Promise<unknown>[] = [];
        for (; offered < due; offered++) {
          burst.push(publish(side, `bench-${i++ % DEVICES}`, { temperature: 20 + (i % 50) / 10 }));
        }
        await Promise.all(burst);
        const next = started + ((offered + 1) * 1000) / rate;
        const wait = Math.max(BURST_MS, next - performance.now());
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    const round = histogram();
    const probe: TwinRef = { type: "thermostat", id: PROBE_ID };
    const t0 = performance.now();
    const sideCpu0 = processCpuMs(side.pid);
    const benchCpu0 = process.cpuUsage();
    for (let p = 0; p < PROBES; p++) {
      const value = Math.round((10 + (p % 100) / 10) * 100) / 100 + (p % 2 ? 0.001 : 0.002);
      const start = performance.now();
      const published = stageNow();
      await publish(side, probe.id, { temperature: value });
      const puback = stageNow();
      for (;;) {
        const view = await side.reader.readView(probe);
        if (view?.reported["temperature"] === value) break;
        await pollPause();
      }
      if (STAGES) side.stages.probe(published, puback, stageNow());
      const us = Math.max(1, Math.round((performance.now() - start) * 1000));
      round.recordValue(us);
      into.recordValue(us);
    }
    const seconds = (performance.now() - t0) / 1000;
    const sideCpu1 = processCpuMs(side.pid);
    const benchCpu = process.cpuUsage(benchCpu0);
    stop = true;
    await background;
    await streamEmpty(jsm, side.stream);
    return {
      ...percentiles(round),
      /** CPU cores used by the side's process and by this bench process during the probes. */
      sideCores:
        sideCpu0 === undefined || sideCpu1 === undefined
          ? undefined
          : Math.round(((sideCpu1 - sideCpu0) / 1000 / seconds) * 100) / 100,
      benchCores: Math.round(((benchCpu.user + benchCpu.system) / 1e6 / seconds) * 100) / 100,
    };
  };

  note(`warm-up: one report per device on each side (${DEVICES} twins activated)...`);
  for (const side of sides) await throughput(side, DEVICES);
  const perSide = new Map(
    sides.map((side) => [
      side.name,
      {
        rates: [] as number[],
        cpuUsPerReport: [] as (number | undefined)[],
        storePerReport: [] as Awaited<ReturnType<typeof throughput>>["storePerReport"][],
        latencyRounds: [] as Awaited<ReturnType<typeof latency>>[],
        latency: histogram(),
      },
    ]),
  );
  let backgroundRate = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of sides) {
      const figures = perSide.get(side.name)!;
      const { rate, cpuUsPerReport, storePerReport } = await throughput(side, REPORTS);
      figures.rates.push(rate);
      figures.cpuUsPerReport.push(cpuUsPerReport);
      figures.storePerReport.push(storePerReport);
      if (backgroundRate === 0) backgroundRate = Math.max(10, Math.round(rate / 2));
      const lat = await latency(side, backgroundRate, figures.latency);
      figures.latencyRounds.push(lat);
      note(
        `round ${round + 1} ${side.name}: ${rate} reports/s (${cpuUsPerReport} µs CPU per report${storePerReport ? `; per report in Cassandra ${storePerReport.commits} commits, ${storePerReport.writes} writes, ${storePerReport.reads} reads` : ""}); publish → in the store p50 ${lat.p50} ms, p99 ${lat.p99} ms, ${lat.sideCores} cores (load ${loadAverage()})`,
      );
    }
  }
  const doppel = perSide.get("doppel")!;
  const bare = perSide.get("baseline")!;
  const ratios = doppel.rates.map((rate, i) => Math.round((rate / bare.rates[i]!) * 1000) / 1000);
  const sideResult = (name: Side["name"]) => {
    const figures = perSide.get(name)!;
    const side = sides.find((s) => s.name === name)!;
    return {
      reportsPerSecond: summary(figures.rates),
      rounds: figures.rates,
      cpuUsPerReport: figures.cpuUsPerReport,
      ...(cassandraAdmin ? { storePerReport: figures.storePerReport } : {}),
      latencyMs: percentiles(figures.latency),
      latencyRounds: figures.latencyRounds,
      ...(STAGES ? { stages: side.stages.breakdown() } : {}),
    };
  };
  const result = {
    doppel: sideResult("doppel"),
    baseline: sideResult("baseline"),
    doppelVsBaseline: Math.round((summary(doppel.rates).median / summary(bare.rates).median) * 1000) / 1000,
    ratioRounds: ratios,
  };
  if (STAGES)
    for (const side of sides) note(`  ${side.name} stages (ms): ${JSON.stringify(result[side.name].stages)}`);
  note(
    `  median doppel ${result.doppel.reportsPerSecond.median}/s, baseline ${result.baseline.reportsPerSecond.median}/s, ratio ${result.doppelVsBaseline} (rounds ${ratios.join(", ")})`,
  );

  report("ingest", {
    command: [
      ...(quick ? ["BENCH_QUICK=1"] : []),
      ...(STORE === "cassandra" ? ["BENCH_STORE=cassandra"] : []),
      ...(process.env["BENCH_SHARDS"] === undefined ? [] : [`BENCH_SHARDS=${SHARDS}`]),
      ...(process.env["BENCH_ROUNDS"] === undefined ? [] : [`BENCH_ROUNDS=${ROUNDS}`]),
      ...(STAGES ? ["BENCH_STAGES=1"] : []),
      ...(process.env["BENCH_BURST_MS"] === undefined ? [] : [`BENCH_BURST_MS=${BURST_MS}`]),
      "npm run bench:ingest",
    ].join(" "),
    store: STORE,
    setup: {
      nats: "nats-server v2.15.3, JetStream file store, loopback",
      store:
        STORE === "cassandra"
          ? "Cassandra (shared server), CassandraEventStore on each side's own keyspace"
          : "SqliteEventStore, WAL, synchronous=FULL, each side its own file",
      shards: SHARDS,
      consumers: "one per process, filtered on every shard subject (both sides)",
      devices: DEVICES,
      reportsPerRound: REPORTS,
      window: WINDOW,
      rounds: ROUNDS,
      probesPerRound: PROBES,
      backgroundReportsPerSecond: backgroundRate,
      backgroundOfferedEveryMs: BURST_MS,
      nodeStartMs: node.startMs,
      latency:
        "probe publish (JetStream ack) → its value in the store's view (readView polled every ~0.2 ms by the bench process), same on both sides",
      baseline:
        "bench/ingest-baseline.ts: same stream settings and consumer layout, HandWrittenTwin (the Thermostat's schema, shadow merge, onReported, apply), the same store class and durability, group commit, ack after commit",
      load: loadAverage(),
    },
    ...result,
  });
} catch (error) {
  // Printed here: the process.exit below would otherwise end the run with status 0 and no message.
  console.error("bench:ingest failed:", error);
  process.exitCode = 1;
} finally {
  node.child.kill("SIGTERM");
  baseline.kill("SIGTERM");
  await Promise.all([
    new Promise((resolve) => node.child.once("exit", resolve)),
    new Promise((resolve) => baseline.once("exit", resolve)),
  ]);
  await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);
  await wire.close();
  await cassandraAdmin?.shutdown();
  rmSync(dataDir, { recursive: true, force: true });
  if (started) spawnSync("bash", ["scripts/infra/nats.sh", "down"], { cwd: ROOT, stdio: "inherit" });
  process.exit(process.exitCode ?? 0);
}
