/**
 * What the twin-creation quota costs a creation, in the store: `CONCURRENCY` callers each commit
 * one new twin at a time (one `$reported` event, its first commit) and wait for it, through the
 * same store, in three ways interleaved round by round (the order rotating):
 * - `plain`: no creator (what every creation cost before the quota, and still costs for a key
 *   without `--max-twins`);
 * - `one key`: every creation counted against one key (the worst case on Cassandra: one
 *   compare-and-set row, a node's reservations for it one at a time);
 * - `key per caller`: each caller counts against its own key.
 * On SQLite (a temporary file, synchronous=FULL) and on Cassandra (keyspace
 * `<DOPPEL_TEST_KEYSPACE_PREFIX>doppel_bench_quota`, at DOPPEL_CASSANDRA or 127.0.0.1:19042; the
 * Cassandra part is left out, and says so, when no server answers). Figures: creations per
 * second (median over rounds with the spread) and p50/p99 of one creation, ratios to `plain`.
 *
 *   npm run bench:quota            (BENCH_QUICK=1 for a short run; BENCH_CREATIONS, BENCH_CONCURRENCY, BENCH_ROUNDS)
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TwinCommit, TwinCreator } from "../runtime/core/records.ts";
import { parseContactPoints } from "../runtime/persistence/cassandra/options.ts";
import { CassandraEventStore } from "../runtime/persistence/cassandra/store.ts";
import type { EventStore } from "../runtime/persistence/event-store.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import { closedLoop, type LoopRound, loadAverage, median, note, report, summary } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const CREATIONS = Number(process.env["BENCH_CREATIONS"] ?? (quick ? 300 : 2000));
const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 16);
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? (quick ? 2 : 5));
const CASSANDRA = process.env["DOPPEL_CASSANDRA"] || "127.0.0.1:19042";
const KEYSPACE = `${process.env["DOPPEL_TEST_KEYSPACE_PREFIX"] ?? ""}doppel_bench_quota`;
const MAX_TWINS = 1_000_000_000;

type Side = "plain" | "one key" | "key per caller";
const SIDES: readonly Side[] = ["plain", "one key", "key per caller"];

/** The first commit of a new twin (one `$reported` event), counted against `creator` when given. */
function creation(type: string, id: string, creator: TwinCreator | undefined): TwinCommit {
  const at = Date.now();
  const patch = { temperature: 21.5, heating: false, firmware: "2.4.1" };
  return {
    ref: { type, id },
    shard: 0,
    expectedSeq: 0,
    events: [
      {
        seq: 1,
        type: "$reported",
        data: { type: "$reported", patch },
        at,
        commitId: randomUUID(),
        writer: { node: "bench", epoch: 0 },
      },
    ],
    view: {
      type,
      id,
      version: 1,
      state: {},
      reported: patch,
      desired: {},
      delta: {},
      createdAt: at,
      updatedAt: at,
    },
    reminders: { set: [], clear: [] },
    ...(creator ? { creator } : {}),
  };
}

/** One round of one side: `CREATIONS` new twins by `CONCURRENCY` callers. */
async function round(store: EventStore, side: Side): Promise<LoopRound> {
  const type = `Q${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const oneKey = { principal: `service-key:${type}`, maxTwins: MAX_TWINS };
  return closedLoop(
    async (n) => {
      const creator =
        side === "plain"
          ? undefined
          : side === "one key"
            ? oneKey
            : { principal: `service-key:${type}-${n % CONCURRENCY}`, maxTwins: MAX_TWINS };
      const [error] = await store.commit([creation(type, `t${n}`, creator)]);
      if (error) throw error;
    },
    CREATIONS,
    CONCURRENCY,
  );
}

async function measure(name: string, store: EventStore) {
  const rounds = new Map<Side, LoopRound[]>(SIDES.map((side) => [side, []]));
  await round(store, "one key"); // warm-up: prepared statements, the table's first rows
  for (let r = 0; r < ROUNDS; r++) {
    const order = SIDES.map((_, i) => SIDES[(i + r) % SIDES.length]!);
    for (const side of order) {
      const result = await round(store, side);
      rounds.get(side)!.push(result);
      note(
        `${name} round ${r + 1}/${ROUNDS} ${side}: ${result.callsPerSecond}/s p50 ${result.p50} ms p99 ${result.p99} ms`,
      );
    }
  }
  const plain = rounds.get("plain")!;
  return Object.fromEntries(
    SIDES.map((side) => {
      const own = rounds.get(side)!;
      return [
        side,
        {
          creationsPerSecond: summary(own.map((x) => x.callsPerSecond)),
          p50Ms: median(own.map((x) => x.p50)),
          p99Ms: median(own.map((x) => x.p99)),
          ratioToPlain: median(own.map((x, i) => x.callsPerSecond / plain[i]!.callsPerSecond)),
        },
      ];
    }),
  );
}

function reachable(address: string): Promise<boolean> {
  const [host = "127.0.0.1", port = "9042"] = address.split(",")[0]!.split(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

const load = loadAverage();
const dir = mkdtempSync(join(tmpdir(), "doppel-bench-quota-"));
const results: Record<string, unknown> = {};
const sqlite = new SqliteEventStore({ path: join(dir, "doppel.db") });
try {
  results["sqlite"] = await measure("sqlite", sqlite);
} finally {
  await sqlite.close();
  rmSync(dir, { recursive: true, force: true });
}
if (await reachable(CASSANDRA)) {
  const store = await CassandraEventStore.open({
    contactPoints: parseContactPoints(CASSANDRA),
    localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
    keyspace: KEYSPACE,
    maxConcurrentRequests: CONCURRENCY * 4,
  });
  try {
    results["cassandra"] = await measure("cassandra", store);
  } finally {
    await store.close();
  }
} else {
  note(`no Cassandra at ${CASSANDRA}: the Cassandra part is left out`);
  results["cassandra"] = `left out: no server at ${CASSANDRA}`;
}
report("quota", {
  creations: CREATIONS,
  concurrency: CONCURRENCY,
  rounds: ROUNDS,
  loadAverage: { before: load, after: loadAverage() },
  ...results,
});
