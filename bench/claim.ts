/**
 * The claim at activation on SQLite (the embedded default): `loadTwin` alone vs `loadTwin` with
 * `claimEpoch` at a new epoch each time (so every claim writes: one immediate transaction with
 * the claim row, `synchronous = FULL` as a node runs by default), A/B interleaved per twin, the
 * order alternating. Twins have 20 events of ~300 B and no snapshot. The Cassandra figures are
 * in `bench:store`'s cold-activation part.
 *
 *   npm run bench:claim            (BENCH_TWINS to change the number of twins)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TwinCommit } from "../runtime/core/records.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import { histogram, note, percentiles, report } from "./lib.ts";

const TWINS = Number(process.env["BENCH_TWINS"] ?? 2000);
const EVENTS = 20;

const dir = mkdtempSync(join(tmpdir(), "doppel-bench-claim-"));
const store = new SqliteEventStore({ path: join(dir, "twins.db") });
try {
  const type = "benchmeter";
  note(`writing ${TWINS} twins of ${EVENTS} events...`);
  for (let i = 0; i < TWINS; i++) {
    const ref = { type, id: `t${i}` };
    const at = Date.now();
    const commit: TwinCommit = {
      ref,
      shard: 0,
      expectedSeq: 0,
      events: Array.from({ length: EVENTS }, (_, j) => ({
        seq: j + 1,
        type: "added",
        data: { type: "added", by: 1, note: "y".repeat(250) },
        at,
        commitId: `c${i}`,
        writer: { node: "bench", epoch: 1 },
      })),
      view: {
        type,
        id: ref.id,
        version: EVENTS,
        state: { total: EVENTS },
        reported: {},
        desired: {},
        delta: {},
        createdAt: at,
        updatedAt: at,
      },
      reminders: { set: [], clear: [] },
    };
    const [error] = await store.commit([commit]);
    if (error) throw error;
  }
  const plain = histogram();
  const claimed = histogram();
  let epoch = 1;
  note("loading each twin without and with a claim, interleaved...");
  for (let i = 0; i < TWINS; i++) {
    const ref = { type, id: `t${i}` };
    await store.loadTwin(ref); // warm: both sides read cached pages
    for (const claim of i % 2 === 0 ? [false, true] : [true, false]) {
      const t0 = performance.now();
      const loaded = await store.loadTwin(ref, claim ? { claimEpoch: ++epoch } : {});
      (claim ? claimed : plain).recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      if (loaded.events.length !== EVENTS) throw new Error("replay incomplete");
    }
  }
  const a = percentiles(plain);
  const b = percentiles(claimed);
  note(`loadTwin p50 ${a.p50} ms p99 ${a.p99} ms; with the claim p50 ${b.p50} ms p99 ${b.p99} ms`);
  report("claim", {
    command: "npm run bench:claim",
    store: "sqlite, synchronous FULL, WAL",
    twins: TWINS,
    eventsPerTwin: EVENTS,
    loadTwinMs: a,
    loadTwinWithClaimMs: b,
    p50Ratio: Math.round((b.p50 / a.p50) * 100) / 100,
  });
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
