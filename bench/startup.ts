/**
 * Start-up bench: how long a cluster node takes from its process being spawned to its running
 * line (`node bin/doppel.js start --nats --redis --cassandra --cluster`, on the servers at
 * `DOPPEL_NATS`, `DOPPEL_REDIS`, `DOPPEL_CASSANDRA`), on a quiet machine and beside
 * `BENCH_BUSY` (3) busy loops, alternating (quiet, busy, busy, quiet, ...) for `BENCH_ROUNDS` (4)
 * pairs. Each node gets a cluster of its own and stops (SIGTERM) once it runs; the ingress stream
 * (`DOPPEL_INGRESS`) is deleted before and after, as `bench:cluster` does. It tells start-up
 * work from contention: `bench:cluster`'s restarts after a failover start beside the survivors'
 * catch-up and its background load.
 *
 *   npm run bench:startup
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { clusterNodeArgs, loadAverage, median, note, report } from "./lib.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 4);
const BUSY = Number(process.env["BENCH_BUSY"] ?? 3);
const SHARDS = 16;

function server(name: string): string {
  const value = process.env[name];
  if (!value)
    throw new Error(`${name} is not set: eval "$(scripts/infra/all.sh env)" after scripts/infra/all.sh up`);
  return value;
}
const servers = {
  nats: server("DOPPEL_NATS"),
  redis: server("DOPPEL_REDIS"),
  cassandra: server("DOPPEL_CASSANDRA"),
};

/** Spawns one node and resolves with the ms from the spawn to its running line; then stops it. */
async function startOnce(id: string): Promise<number> {
  const spawnedAt = performance.now();
  const child = spawn(
    process.execPath,
    clusterNodeArgs({ id, cluster: `startup-${id}`, shards: SHARDS, listen: "127.0.0.1:0", ...servers }),
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let output = "";
  const ms = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("is running")) resolve(performance.now() - spawnedAt);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then((code) => reject(new Error(`node ${id} exited (${code}) before it ran:\n${output}`)));
  });
  child.kill("SIGTERM");
  await exited;
  return ms;
}

function burn(count: number): ChildProcess[] {
  return Array.from({ length: count }, () => spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }));
}

const wire = await NatsTransport.connect({ servers: servers.nats, name: "bench-startup" });
const jsm = await jetstreamManager(wire.connection);
await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);

const quiet: number[] = [];
const busy: number[] = [];
const load = [loadAverage()];
const run = `${process.pid}`;
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of round % 2 === 0 ? ["quiet", "busy"] : ["busy", "quiet"]) {
    const burners = mode === "busy" ? burn(BUSY) : [];
    try {
      const ms = await startOnce(`n${run}-${round}-${mode}`);
      (mode === "busy" ? busy : quiet).push(Math.round(ms));
      note(`round ${round + 1}/${ROUNDS} ${mode}: running after ${Math.round(ms)} ms`);
    } finally {
      for (const burner of burners) burner.kill("SIGKILL");
    }
  }
}
load.push(loadAverage());
await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);
await wire.close();
const summary = (values: number[]) => ({
  median: median(values),
  min: Math.min(...values),
  max: Math.max(...values),
  runs: values,
});
report("startup", {
  command: "npm run bench:startup",
  node: `node bin/doppel.js start --nats --redis --cassandra --cluster --shards ${SHARDS} --no-demo`,
  busyLoops: BUSY,
  load,
  quietMs: summary(quiet),
  busyMs: summary(busy),
});
