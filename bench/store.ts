/**
 * Store bench, against one real Cassandra:
 *
 * 1. Appends: events per second through `CassandraEventStore` (fenced, the default), through the
 *    same store with the unfenced commit (a store hook only this bench sets), and by a bare
 *    `cassandra-driver` loop writing the same event rows (same table, same values, ~300 bytes
 *    each) as the same commits (the batching the latest fenced run produced: one prepared INSERT
 *    for a commit of one event, one single-partition unlogged batch for several) with the same
 *    concurrency (`CONCURRENCY` requests in flight; the stores are opened with
 *    `maxConcurrentRequests = CONCURRENCY`). The store side runs like the engine: callers append
 *    turns and wait for the acknowledgement; per twin at most one commit is in flight and turns
 *    that arrive meanwhile join the next one (group commit, through the engine's `GroupCommitter`).
 *    Scenarios:
 *    - one-event commands: `CONCURRENCY` callers round-robin over the twins, one event per
 *      command (Pekko's write path; target: fenced >= 0.8x bare);
 *    - group commit: every twin has `PER_TWIN` (8) reports of 1-3 events in flight (a backlog,
 *      e.g. a JetStream consumer catching up; target: fenced >= 1.0x bare at the same batching).
 *    Per round and scenario the three sides run back to back, the order rotating by round; the
 *    figures are medians over the rounds with their spread, ratios per round and their median.
 *    Append latency is turn submitted -> acknowledged; under saturation it is mostly queueing
 *    (Little's law: callers in flight / throughput).
 * 2. Cold activation: twins with a snapshot at seq 200 and 0-100 later events; `loadTwin` alone
 *    and with the claim at activation (`claimEpoch`: one lightweight transaction raising the
 *    head's epoch), interleaved, and a whole activation through a node (load and claim, replay,
 *    one read-only turn), p50/p99. `BENCH_COLD_ONLY=1` runs only this part.
 *
 * 3. The server's price of a conditional write, without Doppel: a bare loop of lightweight
 *    transactions shaped like the commit point (`UPDATE ... SET seq = ?, plan = ? IF seq = ?` on one
 *    row per key, the plan 50 B, 300 B, 750 B, 1.2 KB or 2 KB) against a bare loop of plain
 *    INSERTs of 300 B rows, the same keys and concurrency, interleaved by round (order rotating).
 *    It bounds what any commit with one conditional write can reach against a plain insert.
 *    `BENCH_LWT_ONLY=1` runs only this part.
 *
 * Targets: as above; cold activation p99 < 10 ms.
 *
 *   npm run bench:store            (BENCH_QUICK=1 for a short run; BENCH_TWINS, BENCH_CONCURRENCY, BENCH_ROUNDS,
 *                                   BENCH_EVENTS, BENCH_ONE_EVENTS, BENCH_PER_TWIN to change the workload)
 *
 * Uses DOPPEL_CASSANDRA if set; otherwise starts the test server with scripts/infra/cassandra.sh
 * (and stops it again if it was not running). Works in keyspace `<DOPPEL_TEST_KEYSPACE_PREFIX>doppel_bench` (BENCH_KEYSPACE),
 * dropped first.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import cassandra from "cassandra-driver";
import { Twin, z } from "doppel";
import type * as hdr from "hdr-histogram-js";
import type { JsonObject } from "../runtime/core/json.ts";
import type { EventRecord, TwinCommit } from "../runtime/core/records.ts";
import { GroupCommitter } from "../runtime/engine/group-commit.ts";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { parseContactPoints } from "../runtime/persistence/cassandra/options.ts";
import { eventParams } from "../runtime/persistence/cassandra/rows.ts";
import { statementsFor } from "../runtime/persistence/cassandra/statements.ts";
import { CassandraEventStore } from "../runtime/persistence/cassandra/store.ts";
import { closedLoop, histogram, loadAverage, median, note, percentiles, report, summary } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const TWINS = Number(process.env["BENCH_TWINS"] ?? 1000);
const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 64);
const EVENTS = Number(process.env["BENCH_EVENTS"] ?? (quick ? 10_000 : 40_000));
/** Events of the one-event scenario (one commit each, so fewer). */
const ONE_EVENTS = Number(process.env["BENCH_ONE_EVENTS"] ?? (quick ? 3000 : 10_000));
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? (quick ? 2 : 3));
/** Reports in flight per twin in the headline scenario (a saturated fleet: a backlog per twin). */
const PER_TWIN = Number(process.env["BENCH_PER_TWIN"] ?? 8);
const COLD_TWINS = quick ? 100 : 300;
/** Pause between writing the cold-activation twins and timing their activation. */
const SETTLE_MS = quick ? 1000 : 5000;
const KEYSPACE =
  process.env["BENCH_KEYSPACE"] ?? `${process.env["DOPPEL_TEST_KEYSPACE_PREFIX"] ?? ""}doppel_bench`;
const OWN = "127.0.0.1:19042";
const REPO = fileURLToPath(new URL("..", import.meta.url));

// ---- the server ----

function infra(command: "up" | "down" | "status"): boolean {
  try {
    execFileSync("bash", ["scripts/infra/cassandra.sh", command], {
      cwd: REPO,
      stdio: ["ignore", "ignore", command === "status" ? "ignore" : "inherit"],
      env: { ...process.env, DOPPEL_CASSANDRA: OWN },
    });
    return true;
  } catch {
    return false;
  }
}

const external = process.env["DOPPEL_CASSANDRA"];
const address = external || OWN;
let startedServer = false;
if (!external) {
  if (!infra("status")) {
    note("starting Cassandra with scripts/infra/cassandra.sh up ...");
    if (!infra("up")) throw new Error("could not start Cassandra (scripts/infra/cassandra.sh up)");
    startedServer = true;
  }
}
const contactPoints = parseContactPoints(address);
const localDataCenter = process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1";

// ---- data ----

/** A realistic device report turn: `$reported` (+ a decision, + an alarm), ~300 bytes each. */
function turnEvents(
  twin: number,
  firstSeq: number,
  count: number,
  commitId: string,
  at: number,
): EventRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const seq = firstSeq + i;
    const data: JsonObject =
      i === 0
        ? {
            type: "$reported",
            patch: {
              temperature: 18 + ((twin * 7 + seq) % 80) / 10,
              humidity: 35 + ((twin + seq) % 30),
              heating: seq % 3 === 0,
              firmware: "2.4.1-build.5531",
              battery: 87.5,
              rssi: -67,
              location: { site: "plant-north", floor: 3, room: `R-${twin % 50}` },
            },
          }
        : {
            type: i === 1 ? "heatingDecided" : "alarmRaised",
            heating: seq % 2 === 0,
            temperature: 21.5,
            note: "x".repeat(120),
          };
    return {
      seq,
      type: String(data["type"]),
      data,
      at,
      commitId,
      causation: `dev-${twin}-${seq}`,
      writer: { node: "bench-node", epoch: 7 },
    };
  });
}

function viewOf(type: string, id: string, version: number, at: number) {
  return {
    type,
    id,
    version,
    state: { setPoint: 21, mode: "auto", heatingDemand: version % 2 === 0, alarm: "none" },
    reported: { temperature: 21.5, humidity: 40, heating: true, firmware: "2.4.1-build.5531" },
    desired: { heating: true },
    delta: {},
    createdAt: at,
    updatedAt: at,
  };
}

// ---- bare loop ----

/** One commit as the store side grouped it: a twin and how many events. */
interface Batching {
  readonly twin: number;
  readonly events: number;
}

/**
 * What a competent engineer writes by hand with the driver, at the store side's batching: each
 * commit of `batching` is one write of the same event rows (same table, same values), a plain
 * prepared INSERT for one event, a single-partition unlogged batch (atomic and isolated in
 * Cassandra) for several; `CONCURRENCY` writes in flight, LOCAL_QUORUM, token-aware routing (the
 * driver's default policy). No fence, no view, no head: that is the bare loop's advantage.
 */
async function bareLoop(client: cassandra.Client, type: string, batching: readonly Batching[]) {
  // The store's own INSERT text (same columns, same values).
  const query = statementsFor(KEYSPACE).insertEvent;
  const seqs = new Array<number>(TWINS).fill(0);
  const commits = batching.map(({ twin, events }, k) => {
    const rows = turnEvents(twin, seqs[twin]! + 1, events, `b${k}`, Date.now()).map((event) => [
      type,
      `t${twin}`,
      Math.floor((event.seq - 1) / 1000),
      ...eventParams(event),
    ]);
    seqs[twin]! += events;
    return rows;
  });
  const options = { prepare: true, consistency: cassandra.types.consistencies.localQuorum };
  const latency = histogram();
  let next = 0;
  let total = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < commits.length) {
        const rows = commits[next++]!;
        const t0 = performance.now();
        if (rows.length === 1) await client.execute(query, rows[0], options);
        else
          await client.batch(
            rows.map((params) => ({ query, params })),
            { ...options, logged: false },
          );
        total += rows.length;
        record(latency, t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    eventsPerSecond: Math.round(total / seconds),
    events: total,
    commits: commits.length,
    eventsPerCommit: round2(total / commits.length),
    seconds: round2(seconds),
    latencyMs: percentiles(latency),
  };
}

// ---- store side: an engine-like pipeline ----

interface TwinPipe {
  seq: number;
  inflight: boolean;
  pending: { events: EventRecord[]; waiters: (() => void)[] } | null;
}

/** A measured scenario: how callers submit turns. */
interface Scenario {
  readonly name: string;
  /** Reports in flight per twin; 0: `CONCURRENCY` callers round-robin over the twins. */
  readonly perTwin: number;
  /** Events per turn of the `k`th turn. */
  readonly turnSize: (k: number) => number;
  readonly events: number;
}

/**
 * Appends `scenario.events` events through the store, and records the batching (twin and events
 * of every commit) for the bare loop. `perTwin` > 0: every twin has that many callers (a device
 * with that many reports unacknowledged); 0: `CONCURRENCY` callers round-robin over the twins (a
 * twin almost never has two turns pending, so nothing groups beyond a turn).
 */
async function storeAppends(store: CassandraEventStore, type: string, scenario: Scenario) {
  const { perTwin, events: total } = scenario;
  const committer = new GroupCommitter(store, { maxBatch: 512, maxInFlight: 4 });
  const pipes: TwinPipe[] = Array.from({ length: TWINS }, () => ({ seq: 0, inflight: false, pending: null }));
  const batching: Batching[] = [];
  let committedEvents = 0;
  const pump = (twin: number) => {
    const pipe = pipes[twin]!;
    if (pipe.inflight || !pipe.pending) return;
    const batch = pipe.pending;
    pipe.pending = null;
    pipe.inflight = true;
    const expectedSeq = batch.events[0]!.seq - 1;
    const commit: TwinCommit = {
      ref: { type, id: `t${twin}` },
      shard: twin % 256,
      expectedSeq,
      events: batch.events,
      view: viewOf(type, `t${twin}`, expectedSeq + batch.events.length, Date.now()),
      reminders: { set: [], clear: [] },
    };
    committer.submit(commit).then(
      () => {
        batching.push({ twin, events: batch.events.length });
        committedEvents += batch.events.length;
        pipe.inflight = false;
        for (const resolve of batch.waiters) resolve();
        pump(twin);
      },
      (error: unknown) => {
        throw error;
      },
    );
  };
  const append = (twin: number, count: number, k: number) =>
    new Promise<void>((resolve) => {
      const pipe = pipes[twin]!;
      const events = turnEvents(twin, pipe.seq + 1, count, `s${k}`, Date.now());
      pipe.seq += count;
      pipe.pending ??= { events: [], waiters: [] };
      pipe.pending.events.push(...events);
      pipe.pending.waiters.push(resolve);
      pump(twin);
    });
  const latency = histogram();
  let appended = 0;
  let k = 0;
  const started = performance.now();
  const callers = perTwin > 0 ? TWINS * perTwin : CONCURRENCY;
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      while (appended < total) {
        const turn = k++;
        const count = Math.min(scenario.turnSize(turn), total - appended);
        appended += count;
        const t0 = performance.now();
        await append(perTwin > 0 ? caller % TWINS : turn % TWINS, count, turn);
        record(latency, t0);
      }
    }),
  );
  await committer.whenIdle();
  const seconds = (performance.now() - started) / 1000;
  return {
    result: {
      eventsPerSecond: Math.round(total / seconds),
      events: total,
      commits: batching.length,
      eventsPerCommit: round2(committedEvents / batching.length),
      seconds: round2(seconds),
      latencyMs: percentiles(latency),
    },
    batching,
  };
}

// ---- cold activation ----

interface BenchMeterState {
  readonly total: number;
  readonly adds: number;
}

type BenchMeterEvent = { readonly type: "added"; readonly by: number };

class BenchMeter extends Twin<BenchMeterState, BenchMeterEvent> {
  static readonly type = "benchmeter";
  static readonly commands = { read: z.object({}) };
  initialState(): BenchMeterState {
    return { total: 0, adds: 0 };
  }
  apply(state: BenchMeterState, event: BenchMeterEvent): BenchMeterState {
    return { total: state.total + event.by, adds: state.adds + 1 };
  }
  read() {
    return this.state;
  }
}

async function coldActivation(store: CassandraEventStore) {
  const type = BenchMeter.type;
  const ids = Array.from({ length: COLD_TWINS }, (_, i) => `cold-${Date.now().toString(36)}-${i}`);
  note(`cold activation: ${COLD_TWINS} twins with a snapshot at 200 and 0-100 events after it...`);
  const padding = "p".repeat(800); // a ~1 KB state
  for (const [i, id] of ids.entries()) {
    const ref = { type, id };
    const after = Math.floor((i * 101) / COLD_TWINS); // 0..100
    const commits: TwinCommit[] = [];
    for (let seq = 0; seq < 200 + after; seq += 50) {
      const count = Math.min(50, 200 + after - seq);
      const events = Array.from({ length: count }, (_, j) => ({
        seq: seq + j + 1,
        type: "added",
        data: { type: "added", by: 1, note: "y".repeat(150) },
        at: Date.now(),
        commitId: `c${seq}`,
        writer: { node: "bench", epoch: 0 },
      }));
      commits.push({
        ref,
        shard: 0,
        expectedSeq: seq,
        events,
        view: {
          ...viewOf(type, id, seq + count, Date.now()),
          state: { total: seq + count, adds: seq + count },
        },
        reminders: { set: [], clear: [] },
      });
    }
    for (const commit of commits) {
      const [error] = await store.commit([commit]);
      if (error) throw error;
    }
    await store.writeSnapshot(ref, {
      seq: 200,
      at: Date.now(),
      createdAt: Date.now(),
      state: { total: 200, adds: 200, padding } as never,
      reported: { temperature: 21.5 },
      desired: {},
      reminders: [],
      recent: Array.from({ length: 16 }, (_, r) => `m-${r}`),
    });
  }
  // Let the server settle after the writes (memtable flushes, compactions) before timing reads.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  // loadTwin alone and loadTwin with the claim at activation (a new epoch each time, so every
  // claim writes: the lightweight transaction on the head), A/B interleaved, the order
  // alternating by twin. Each twin is loaded once before (untimed) so both sides read warm rows.
  const load = histogram();
  const claimed = histogram();
  let epoch = Date.now() * 1000;
  for (const [i, id] of ids.entries()) {
    await store.loadTwin({ type, id });
    const sides = i % 2 === 0 ? [false, true] : [true, false];
    for (const claim of sides) {
      const t0 = performance.now();
      const loaded = await store.loadTwin({ type, id }, claim ? { claimEpoch: ++epoch } : {});
      record(claim ? claimed : load, t0);
      if (!loaded.snapshot) throw new Error("snapshot missing");
    }
  }
  // Whole activations through a node: load + replay + one read-only turn, twins not resident.
  const node = await DoppelNode.start(
    { nodeId: "bench", store: { kind: "memory" }, grpc: { listen: false } },
    { twins: [BenchMeter], store, logger: silentLogger() },
  );
  const activation = histogram();
  try {
    for (const id of ids) {
      const t0 = performance.now();
      const { result } = await node.twins.invoke({ type, id }, "read", {});
      record(activation, t0);
      if ((result as { adds: number }).adds < 200) throw new Error("replay incomplete");
    }
  } finally {
    await node.stop();
  }
  return {
    twins: COLD_TWINS,
    snapshotAt: 200,
    eventsAfterSnapshot: "0-100",
    loadTwinMs: percentiles(load),
    loadTwinWithClaimMs: percentiles(claimed),
    activationMs: percentiles(activation),
  };
}

// ---- helpers ----

function record(h: hdr.Histogram, t0: number): void {
  h.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

// ---- run ----

/** One side of the conditional-write probe: plain inserts, or lightweight transactions with a plan of `bytes`. */
type ProbeSide = { readonly kind: "insert" | "lwt"; readonly bytes: number };
const PROBE_SIDES: readonly ProbeSide[] = [
  { kind: "insert", bytes: 300 },
  { kind: "lwt", bytes: 50 },
  { kind: "lwt", bytes: 300 },
  { kind: "lwt", bytes: 750 },
  { kind: "lwt", bytes: 1200 },
  { kind: "lwt", bytes: 2000 },
];
const PROBE_OPS = quick ? 2000 : 5000;

/** Writes per second of one probe side: `PROBE_OPS` writes over `TWINS` keys, `CONCURRENCY` in flight. */
async function probeRound(client: cassandra.Client, side: ProbeSide, tag: string) {
  const payload = "x".repeat(side.bytes);
  const heads = new Map<string, number>();
  const options = { prepare: true, serialConsistency: cassandra.types.consistencies.localSerial };
  const write = async (i: number) => {
    const key = `${tag}-${i % TWINS}`;
    if (side.kind === "insert") {
      await client.execute(
        `INSERT INTO ${KEYSPACE}.probe_rows (k, seq, data) VALUES (?, ?, ?)`,
        [key, i, payload],
        { prepare: true },
      );
      return;
    }
    const head = heads.get(key);
    const result =
      head === undefined
        ? await client.execute(
            `UPDATE ${KEYSPACE}.probe_heads SET seq = ?, plan = ? WHERE k = ? IF seq = null`,
            [i, payload, key],
            options,
          )
        : await client.execute(
            `UPDATE ${KEYSPACE}.probe_heads SET seq = ?, plan = ? WHERE k = ? IF seq = ?`,
            [i, payload, key, head],
            options,
          );
    const row = result.rows[0]!;
    heads.set(key, row["[applied]"] ? i : Number(row["seq"]));
  };
  const { callsPerSecond, p50, p99 } = await closedLoop(write, PROBE_OPS, CONCURRENCY);
  return { writesPerSecond: callsPerSecond, latencyMs: { p50, p99 } };
}

/** Part 3: the probe's sides interleaved by round, order rotating, after one warm-up of each. */
async function conditionalWritePrice(client: cassandra.Client) {
  await client.execute(
    `CREATE TABLE IF NOT EXISTS ${KEYSPACE}.probe_heads (k text PRIMARY KEY, seq bigint, plan text)`,
  );
  await client.execute(
    `CREATE TABLE IF NOT EXISTS ${KEYSPACE}.probe_rows (k text, seq bigint, data text, PRIMARY KEY (k, seq))`,
  );
  const label = (side: ProbeSide) => `${side.kind} ${side.bytes} B`;
  note(`conditional-write price: ${PROBE_SIDES.map(label).join(", ")}; ${CONCURRENCY} in flight...`);
  for (const side of PROBE_SIDES) await probeRound(client, side, `warm${side.bytes}`);
  const runs = new Map<string, Awaited<ReturnType<typeof probeRound>>[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (let j = 0; j < PROBE_SIDES.length; j++) {
      const side = PROBE_SIDES[(j + r) % PROBE_SIDES.length]!;
      const run = await probeRound(client, side, `r${r}b${side.bytes}`);
      runs.set(label(side), [...(runs.get(label(side)) ?? []), run]);
      note(`  round ${r + 1}: ${label(side)} ${run.writesPerSecond}/s, p50 ${run.latencyMs.p50} ms`);
    }
  }
  const inserts = runs.get(label(PROBE_SIDES[0]!))!;
  const sides = PROBE_SIDES.map((side) => {
    const mine = runs.get(label(side))!;
    const vsInsert = mine.map((run, r) => round2(run.writesPerSecond / inserts[r]!.writesPerSecond));
    return {
      side: label(side),
      writesPerSecond: summary(mine.map((run) => run.writesPerSecond)),
      p50Ms: summary(mine.map((run) => run.latencyMs.p50)),
      vsInsert: { median: round2(median(vsInsert)), perRound: vsInsert },
    };
  });
  for (const side of sides.slice(1)) {
    note(
      `  ${side.side}: ${side.writesPerSecond.median}/s, ${side.vsInsert.median}x the inserts (rounds ${side.vsInsert.perRound.join(", ")})`,
    );
  }
  return { ops: PROBE_OPS, concurrency: CONCURRENCY, keys: TWINS, sides };
}

const raw = new cassandra.Client({ contactPoints, localDataCenter });
await raw.connect();
note(`dropping keyspace ${KEYSPACE} for a clean run...`);
await raw.execute(`DROP KEYSPACE IF EXISTS ${KEYSPACE}`);
const settings = { contactPoints, localDataCenter, keyspace: KEYSPACE, maxConcurrentRequests: CONCURRENCY };
const store = await CassandraEventStore.open(settings);
const unfenced = await CassandraEventStore.open(settings, { unfencedCommitsToMeasureTheFence: true });
const scenarios: Scenario[] = [
  {
    name: `one-event commands: ${CONCURRENCY} callers round-robin over ${TWINS} twins, one event per command`,
    perTwin: 0,
    turnSize: () => 1,
    events: ONE_EVENTS,
  },
  {
    name: `group commit: ${TWINS} twins with ${PER_TWIN} reports in flight each, turns of 1-3 events`,
    perTwin: PER_TWIN,
    turnSize: (k) => (k % 3) + 1,
    events: EVENTS,
  },
];
type Result = Awaited<ReturnType<typeof bareLoop>>;
const SIDES = ["fenced", "unfenced", "bare"] as const;
type Side = (typeof SIDES)[number];
try {
  if (process.env["BENCH_LWT_ONLY"] === "1") {
    report("store-lwt", {
      command: "BENCH_LWT_ONLY=1 npm run bench:store",
      loadAverage: [loadAverage()],
      conditionalWritePrice: await conditionalWritePrice(raw),
    });
    process.exitCode = 0;
  } else {
    const tag = Date.now().toString(36);
    // Cold activation first, on the fresh keyspace, before the append rounds load the server.
    const cold = await coldActivation(store);
    note(
      `  loadTwin p50 ${cold.loadTwinMs.p50} ms p99 ${cold.loadTwinMs.p99} ms; with the claim p50 ${cold.loadTwinWithClaimMs.p50} ms p99 ${cold.loadTwinWithClaimMs.p99} ms; activation (claims) p50 ${cold.activationMs.p50} ms p99 ${cold.activationMs.p99} ms`,
    );
    if (process.env["BENCH_COLD_ONLY"] === "1") {
      report("store-cold", { command: "BENCH_COLD_ONLY=1 npm run bench:store", coldActivation: cold });
      process.exitCode = 0;
    } else {
      const load = [loadAverage()];
      // Per scenario, the batching of the latest fenced run: the bare loop writes the same commits.
      const batchingOf = new Map<string, Batching[]>();
      note("warm-up...");
      for (const [i, scenario] of scenarios.entries()) {
        const warm = { ...scenario, events: Math.min(scenario.events, 3000) };
        batchingOf.set(scenario.name, (await storeAppends(store, `warm_f${i}_${tag}`, warm)).batching);
        await storeAppends(unfenced, `warm_u${i}_${tag}`, warm);
        await bareLoop(raw, `warm_b${i}_${tag}`, batchingOf.get(scenario.name)!);
      }
      const perRound: Record<string, Record<Side, Result>>[] = [];
      for (let r = 1; r <= ROUNDS; r++) {
        const round: Record<string, Record<Side, Result>> = {};
        for (const [i, scenario] of scenarios.entries()) {
          // Interleaved: the three sides back to back, the order rotating by round.
          const order = SIDES.map((_, j) => SIDES[(j + r) % SIDES.length]!);
          const sides = {} as Record<Side, Result>;
          for (const side of order) {
            const type = `${side[0]}${i}_${tag}_${r}`;
            note(`round ${r}: ${side}, ${scenario.name}...`);
            if (side === "bare") sides.bare = await bareLoop(raw, type, batchingOf.get(scenario.name)!);
            else {
              const run = await storeAppends(side === "fenced" ? store : unfenced, type, scenario);
              sides[side] = run.result;
              if (side === "fenced") batchingOf.set(scenario.name, run.batching);
            }
            const got = sides[side];
            note(
              `  ${got.eventsPerSecond} events/s (${got.eventsPerCommit} events/commit), p50 ${got.latencyMs.p50} ms, p99 ${got.latencyMs.p99} ms`,
            );
          }
          round[scenario.name] = sides;
        }
        perRound.push(round);
        load.push(loadAverage());
      }
      const results = scenarios.map((scenario) => {
        const of = (side: Side) => perRound.map((round) => round[scenario.name]![side]);
        const ratio = (a: Side, b: Side) =>
          perRound.map((round) =>
            round2(round[scenario.name]![a].eventsPerSecond / round[scenario.name]![b].eventsPerSecond),
          );
        const side = (name: Side) => ({
          eventsPerSecond: summary(of(name).map((x) => x.eventsPerSecond)),
          perRound: of(name),
        });
        const fencedVsBare = ratio("fenced", "bare");
        return {
          scenario: scenario.name,
          fenced: side("fenced"),
          unfenced: side("unfenced"),
          bare: side("bare"),
          fencedVsBare: { median: round2(median(fencedVsBare)), perRound: fencedVsBare },
          fencedVsUnfenced: {
            median: round2(median(ratio("fenced", "unfenced"))),
            perRound: ratio("fenced", "unfenced"),
          },
        };
      });
      for (const r of results) {
        note(
          `${r.scenario}: fenced ${r.fenced.eventsPerSecond.median} events/s, bare ${r.bare.eventsPerSecond.median}, fenced/bare median ${r.fencedVsBare.median} (rounds ${r.fencedVsBare.perRound.join(", ")}), fenced/unfenced ${r.fencedVsUnfenced.median}`,
        );
      }
      report("store", {
        command: "npm run bench:store",
        cassandra: { contactPoints, keyspace: KEYSPACE, startedByBench: startedServer },
        config: {
          twins: TWINS,
          concurrency: CONCURRENCY,
          rounds: ROUNDS,
          eventSize: "~300 B",
          interleaving: "per scenario the three sides back to back, order rotating by round",
          figures: "median of the rounds, spread = (max - min) / median; ratios per round, then their median",
          bare: "the same event rows, the same commits (batching of the latest fenced run): one prepared INSERT per commit of one event, one single-partition unlogged batch per commit of several; CONCURRENCY in flight",
        },
        loadAverage: load,
        targets: {
          oneEvent: "fenced >= 0.8x bare",
          groupCommit: "fenced >= 1.0x bare at the same batching",
          oneEventMet: results[0]!.fencedVsBare.median >= 0.8,
          groupCommitMet: results[1]!.fencedVsBare.median >= 1.0,
        },
        append: results,
        conditionalWritePrice: await conditionalWritePrice(raw),
        coldActivation: {
          ...cold,
          target: "p99 < 10 ms",
          met: cold.activationMs.p99 < 10 && cold.loadTwinMs.p99 < 10,
        },
      });
    }
  }
} finally {
  await store.close();
  await unfenced.close();
  await raw.shutdown();
  if (startedServer) {
    note("stopping the Cassandra this bench started...");
    infra("down");
  }
}
