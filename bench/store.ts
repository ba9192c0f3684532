/**
 * Store bench, against one real Cassandra:
 *
 * 1. Appends: events per second through `CassandraEventStore` beside a bare `cassandra-driver`
 *    loop inserting the same event rows (same table, same values, ~300 bytes each) with the same
 *    concurrency (`CONCURRENCY` requests in flight; the store is opened with
 *    `maxConcurrentRequests = CONCURRENCY`). The store side runs like the engine: callers append
 *    turns of 1-3 events and wait for the acknowledgement; per twin at most one commit is in
 *    flight and turns that arrive meanwhile join the next one (group commit); commits go through
 *    the engine's `GroupCommitter`. Each commit pays the store's commit point (one lightweight
 *    transaction on the twin's head) and one logged batch (events + view, atomic), so the store approaches or beats the bare loop only
 *    as far as group commit puts several events in one commit. Scenarios:
 *    - headline, a saturated fleet: every twin has `PER_TWIN` (8) reports in flight (a backlog,
 *      e.g. a JetStream consumer catching up); then the same with 4;
 *    - `CONCURRENCY` callers round-robin over the twins: one turn per commit, nothing to group.
 *    Append latency is turn submitted -> acknowledged; under saturation it is mostly queueing
 *    (Little's law: callers in flight / throughput).
 * 2. Cold activation: twins with a snapshot at seq 200 and 0-100 later events; `loadTwin` alone
 *    and with the claim at activation (`claimEpoch`: one lightweight transaction raising the
 *    head's epoch), interleaved, and a whole activation through a node (load and claim, replay,
 *    one read-only turn), p50/p99. `BENCH_COLD_ONLY=1` runs only this part.
 *
 * 3. The cost of the fence: each store scenario runs twice per round, interleaved (order
 *    alternating by round), on two stores over the same keyspace: fenced (the default: the
 *    head's lightweight transaction, then the logged batch) and unfenced (`fencedCommits:
 *    false`: the schema-1 read of the log's tail, then the logged batch; unsafe under pauses).
 *    Printed as events/s of each and their ratio.
 *
 * Targets: store throughput >= 0.9x the bare loop; cold activation p99 < 10 ms.
 *
 *   npm run bench:store            (BENCH_QUICK=1 for a short run; BENCH_TWINS, BENCH_CONCURRENCY,
 *                                   BENCH_EVENTS, BENCH_PER_TWIN to change the workload)
 *
 * Uses DOPPEL_CASSANDRA if set; otherwise starts the test server with scripts/infra/cassandra.sh
 * (and stops it again if it was not running). Works in keyspace `doppel_bench` (BENCH_KEYSPACE),
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
import { CassandraEventStore } from "../runtime/persistence/cassandra/store.ts";
import { histogram, note, percentiles, report } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const TWINS = Number(process.env["BENCH_TWINS"] ?? 1000);
const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 64);
const EVENTS = Number(process.env["BENCH_EVENTS"] ?? (quick ? 10_000 : 40_000));
const ROUNDS = quick ? 1 : 2;
/** Reports in flight per twin in the headline scenario (a saturated fleet: a backlog per twin). */
const PER_TWIN = Number(process.env["BENCH_PER_TWIN"] ?? 8);
/** Every scenario measured: reports in flight per twin (0 = CONCURRENCY callers round-robin over the twins). */
const SCENARIOS = [...new Set([PER_TWIN, 4, 0])];
const COLD_TWINS = quick ? 100 : 300;
/** Pause between writing the cold-activation twins and timing their activation. */
const SETTLE_MS = quick ? 1000 : 5000;
const KEYSPACE = process.env["BENCH_KEYSPACE"] ?? "doppel_bench";
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

/** Turn sizes cycle 1, 2, 3 events (2 on average). */
const turnSize = (k: number) => (k % 3) + 1;

// ---- bare loop ----

async function bareLoop(client: cassandra.Client, type: string, total: number) {
  const query = `INSERT INTO ${KEYSPACE}.events (twin_type, twin_id, bucket, seq, commit_id, event_type, data, at, causation, writer_node, writer_epoch)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
  // The same rows the store side writes: turns of 1-3 events, round-robin over the twins.
  const rows: { twin: number; event: EventRecord }[] = [];
  const seqs = new Array<number>(TWINS).fill(0);
  for (let k = 0; rows.length < total; k++) {
    const twin = k % TWINS;
    for (const event of turnEvents(twin, seqs[twin]! + 1, turnSize(k), `b${k}`, Date.now()))
      rows.push({ twin, event });
    seqs[twin]! += turnSize(k);
  }
  rows.length = total;
  const latency = histogram();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < rows.length) {
        const { twin, event } = rows[next++]!;
        const t0 = performance.now();
        await client.execute(
          query,
          [type, `t${twin}`, Math.floor((event.seq - 1) / 1000), ...eventParams(event)],
          { prepare: true, consistency: cassandra.types.consistencies.localQuorum },
        );
        record(latency, t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    rowsPerSecond: Math.round(total / seconds),
    rows: total,
    seconds: round(seconds),
    latencyMs: percentiles(latency),
  };
}

// ---- store side: an engine-like pipeline ----

interface TwinPipe {
  seq: number;
  inflight: boolean;
  pending: { events: EventRecord[]; waiters: (() => void)[] } | null;
}

/**
 * Appends `total` events through the store. `perTwin` > 0: every twin has that many callers (a
 * device with that many reports unacknowledged); 0: `CONCURRENCY` callers round-robin over the
 * twins (a twin almost never has two turns pending, so nothing groups beyond a turn).
 */
async function storeAppends(store: CassandraEventStore, type: string, total: number, perTwin: number) {
  const committer = new GroupCommitter(store, { maxBatch: 512, maxInFlight: 4 });
  const pipes: TwinPipe[] = Array.from({ length: TWINS }, () => ({ seq: 0, inflight: false, pending: null }));
  let commits = 0;
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
        commits++;
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
        const count = Math.min(turnSize(turn), total - appended);
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
    eventsPerSecond: Math.round(total / seconds),
    events: total,
    commits,
    eventsPerCommit: round(committedEvents / commits),
    seconds: round(seconds),
    latencyMs: percentiles(latency),
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

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

// ---- run ----

const raw = new cassandra.Client({ contactPoints, localDataCenter });
await raw.connect();
note(`dropping keyspace ${KEYSPACE} for a clean run...`);
await raw.execute(`DROP KEYSPACE IF EXISTS ${KEYSPACE}`);
const store = await CassandraEventStore.open({
  contactPoints,
  localDataCenter,
  keyspace: KEYSPACE,
  maxConcurrentRequests: CONCURRENCY,
});
const unfenced = await CassandraEventStore.open({
  contactPoints,
  localDataCenter,
  keyspace: KEYSPACE,
  maxConcurrentRequests: CONCURRENCY,
  fencedCommits: false,
});
type StoreResult = Awaited<ReturnType<typeof storeAppends>>;
type BareResult = Awaited<ReturnType<typeof bareLoop>>;
const describe = (perTwin: number) =>
  perTwin > 0
    ? `${TWINS} twins with ${perTwin} reports in flight each`
    : `${CONCURRENCY} callers round-robin over ${TWINS} twins (one turn per commit)`;
try {
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
    note("warm-up...");
    await bareLoop(raw, `warm_bare_${tag}`, 3000);
    await storeAppends(store, `warm_store_${tag}`, 3000, PER_TWIN);
    await storeAppends(unfenced, `warm_unfenced_${tag}`, 3000, PER_TWIN);
    const rounds: {
      bare: BareResult;
      store: Record<string, StoreResult>;
      unfenced: Record<string, StoreResult>;
    }[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      note(`round ${r}: bare loop, ${EVENTS} rows, concurrency ${CONCURRENCY}...`);
      const bare = await bareLoop(raw, `bare_${tag}_${r}`, EVENTS);
      note(`  ${bare.rowsPerSecond} rows/s, p50 ${bare.latencyMs.p50} ms, p99 ${bare.latencyMs.p99} ms`);
      const results: Record<string, StoreResult> = {};
      const plain: Record<string, StoreResult> = {};
      for (const perTwin of SCENARIOS) {
        // A/B interleaved: fenced and unfenced back to back, the order alternating by round.
        const order = r % 2 === 1 ? (["fenced", "unfenced"] as const) : (["unfenced", "fenced"] as const);
        for (const variant of order) {
          note(`round ${r}: store (${variant}), ${EVENTS} events, ${describe(perTwin)}...`);
          const target = variant === "fenced" ? store : unfenced;
          const result = await storeAppends(target, `${variant[0]}${perTwin}_${tag}_${r}`, EVENTS, perTwin);
          note(
            `  ${result.eventsPerSecond} events/s (${result.eventsPerCommit} events/commit), p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms`,
          );
          (variant === "fenced" ? results : plain)[String(perTwin)] = result;
        }
      }
      rounds.push({ bare, store: results, unfenced: plain });
    }
    const fence = SCENARIOS.map((perTwin) => {
      const key = String(perTwin);
      const fencedBest = Math.max(...rounds.map((r) => r.store[key]!.eventsPerSecond));
      const unfencedBest = Math.max(...rounds.map((r) => r.unfenced[key]!.eventsPerSecond));
      return {
        scenario: describe(perTwin),
        fencedEventsPerSecond: fencedBest,
        unfencedEventsPerSecond: unfencedBest,
        fencedVsUnfenced: round(fencedBest / unfencedBest),
        perRound: rounds.map((r) => ({
          fenced: r.store[key]!.eventsPerSecond,
          unfenced: r.unfenced[key]!.eventsPerSecond,
          fencedP99Ms: r.store[key]!.latencyMs.p99,
          unfencedP99Ms: r.unfenced[key]!.latencyMs.p99,
        })),
      };
    });
    for (const f of fence) {
      note(
        `fence cost, ${f.scenario}: fenced ${f.fencedEventsPerSecond} events/s vs unfenced ${f.unfencedEventsPerSecond} events/s (${f.fencedVsUnfenced}x)`,
      );
    }
    const bareBest = Math.max(...rounds.map((r) => r.bare.rowsPerSecond));
    const last = rounds.at(-1)!;
    const scenarios = SCENARIOS.map((perTwin) => {
      const best = Math.max(...rounds.map((r) => r.store[String(perTwin)]!.eventsPerSecond));
      const final = last.store[String(perTwin)]!;
      return {
        scenario: describe(perTwin),
        reportsInFlightPerTwin: perTwin > 0 ? perTwin : "~0 (round-robin)",
        eventsPerSecond: best,
        storeVsBare: round(best / bareBest),
        storeVsBarePerRound: rounds.map((r) =>
          round(r.store[String(perTwin)]!.eventsPerSecond / r.bare.rowsPerSecond),
        ),
        eventsPerCommit: final.eventsPerCommit,
        latencyMs: final.latencyMs,
      };
    });
    const headline = scenarios[0]!;
    report("store", {
      command: "npm run bench:store",
      cassandra: { contactPoints, keyspace: KEYSPACE, startedByBench: startedServer },
      config: {
        twins: TWINS,
        concurrency: CONCURRENCY,
        events: EVENTS,
        rounds: ROUNDS,
        turnEvents: "1-3 (avg 2), ~300 B each",
        figures: "best round of each; ratios against the best bare round",
      },
      append: {
        scenario: headline.scenario,
        storeEventsPerSecond: headline.eventsPerSecond,
        bareLoopRowsPerSecond: bareBest,
        storeVsBare: headline.storeVsBare,
        storeLatencyMs: headline.latencyMs,
        bareLatencyMs: last.bare.latencyMs,
        eventsPerCommit: headline.eventsPerCommit,
        target: "store >= 0.9x bare",
        met: headline.storeVsBare >= 0.9,
        scenarios,
        rounds,
      },
      fence: {
        what: "events/s with the head's lightweight transaction (fenced, default) and with the schema-1 read-then-write commit (unfenced), interleaved in each round",
        scenarios: fence,
      },
      coldActivation: {
        ...cold,
        target: "p99 < 10 ms",
        met: cold.activationMs.p99 < 10 && cold.loadTwinMs.p99 < 10,
      },
    });
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
