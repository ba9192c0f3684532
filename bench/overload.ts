/**
 * Overload bench: a node process (SQLite; `BENCH_STORE=cassandra` for Cassandra at
 * `DOPPEL_CASSANDRA`) on the NATS at `DOPPEL_NATS`, gRPC capacity measured first, then driven at
 * `BENCH_FACTOR` (5) × capacity for `BENCH_SECONDS` (20 s) while devices report over JetStream;
 * prints accepted/refused rates, device throttling, RSS and health-check latency, and whether
 * every acknowledged report arrived. The same run as test/integration/overload, longer.
 *
 *   npm run bench:overload
 */
import { runOverload } from "../test/integration/overload/overload-run.ts";
import { note, report } from "./lib.ts";

const nats = process.env["DOPPEL_NATS"];
if (!nats)
  throw new Error('DOPPEL_NATS is not set: scripts/infra/nats.sh up && eval "$(scripts/infra/nats.sh env)"');
const cassandra = process.env["DOPPEL_CASSANDRA"];
const storeKind = process.env["BENCH_STORE"] ?? "sqlite";
const store =
  storeKind === "cassandra"
    ? {
        kind: "cassandra" as const,
        contactPoints: [cassandra ?? "127.0.0.1:9042"],
        keyspace: `bench_overload_${process.pid}`,
      }
    : ("sqlite" as const);
const figures = await runOverload({
  nats,
  store,
  measureMs: 5000,
  overloadMs: Number(process.env["BENCH_SECONDS"] ?? 20) * 1000,
  factor: Number(process.env["BENCH_FACTOR"] ?? 5),
  log: note,
});
report("overload", { store: storeKind, ...figures });
