/**
 * Overload bench: a node process (SQLite; `BENCH_STORE=cassandra` for Cassandra at
 * `DOPPEL_CASSANDRA`) on the NATS at `DOPPEL_NATS`, gRPC capacity measured first, then driven at
 * `BENCH_FACTOR` (5) × capacity for `BENCH_SECONDS` (20 s), with a gRPC in-flight bound of
 * `BENCH_BOUND` (16; the node's default is 1024), while `BENCH_DEVICES` (4) devices
 * report over JetStream, each a burst of 4 reports every 100 ms;
 * prints accepted/refused rates, device throttling, RSS and health-check latency, and whether
 * every acknowledged report arrived. The same run as test/integration/overload, longer.
 *
 *   npm run bench:overload
 */
import { parseContactPoints } from "../runtime/persistence/cassandra/options.ts";
import { NODE_HEAP_MIB, runOverload } from "../test/integration/overload/overload-run.ts";
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
        contactPoints: parseContactPoints(cassandra ?? "127.0.0.1:9042"),
        keyspace: `bench_overload_${process.pid}`,
      }
    : ("sqlite" as const);
const grpcBound = Number(process.env["BENCH_BOUND"] ?? 16);
let figures: Awaited<ReturnType<typeof runOverload>>;
try {
  figures = await runOverload({
    nats,
    store,
    measureMs: 5000,
    overloadMs: Number(process.env["BENCH_SECONDS"] ?? 20) * 1000,
    factor: Number(process.env["BENCH_FACTOR"] ?? 5),
    devices: Number(process.env["BENCH_DEVICES"] ?? 4),
    grpcBound,
    log: note,
  });
} finally {
  if (store !== "sqlite") {
    // The bench's own keyspace only.
    const cassandraDriver = (await import("cassandra-driver")).default;
    const client = new cassandraDriver.Client({
      contactPoints: parseContactPoints(cassandra ?? "127.0.0.1:9042"),
      localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
    });
    await client.execute(`DROP KEYSPACE IF EXISTS ${store.keyspace}`).catch(() => undefined);
    await client.shutdown();
  }
}
report("overload", { store: storeKind, grpcBound, nodeHeapMiB: NODE_HEAP_MIB, ...figures });
