/**
 * Cluster bench: Doppel nodes as separate processes (`node bin/doppel.js start --nats --redis
 * --cassandra --cluster --shards 256`, default cluster timings: heartbeat 500 ms, dead after 2 s,
 * lease TTL 2 s; ackWait 10 s) on real NATS, Redis and Cassandra, one cluster grown and shrunk
 * through the run:
 *
 * 1. **Reports/s persisted with 1, 2 and 3 nodes**: `DEVICES` simulated devices (the
 *    `DeviceClient` SDK, one NATS connection) send `REPORTS` reports, at most `WINDOW`
 *    unacknowledged; the clock stops when the ingress stream is empty again (every report
 *    persisted in Cassandra and acknowledged). Every node runs on the same machine, so with N
 *    nodes the same cores are shared by N processes: on a 2-core machine this shows the cluster's
 *    overhead (routing, more consumers, more connections), not scaling.
 * 2. **Rebalance on join** (nodes 2 and 3, and each restart in step 3): from the new node's
 *    process being spawned, and from it reporting itself running, to every shard held (lease) by
 *    the node the ring assigns it to, as every member reports it (`GetCluster`, polled).
 * 3. **Failover after kill -9** of one node of three, `FAILOVER_ROUNDS` times (the node is
 *    restarted in between), under a background device load: from the kill to the first successful
 *    write to one of its shards, and to a successful write to every one of them (a `setTarget`
 *    call per moved shard, sent through the survivors as soon as the process is gone; the router
 *    retries until the shard's new owner holds its lease), and to every shard held by its new
 *    owner. A write that fails (its 30 s deadline passed, the cluster refused it) is reported by
 *    shard and code (`failedWrites`) and leaves the round's "all written" figure empty.
 *    The floor is set by the timings: the node is declared dead 2 s after its last heartbeat and
 *    its leases expire at most 2 s after their last renewal.
 *
 *   npm run bench:cluster    (uses DOPPEL_NATS / DOPPEL_REDIS / DOPPEL_CASSANDRA when all are set;
 *                             else starts scripts/infra/all.sh and stops it again;
 *                             BENCH_QUICK=1 for a short run)
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { HashRing } from "../cluster/ring/hash-ring.ts";
import { shardOf } from "../cluster/ring/shard.ts";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { DeviceClient } from "../runtime/devices/client/device-client.ts";
import { DoppelClient } from "../runtime/grpc/client.ts";
import { freePort } from "../runtime/testing/free-port.ts";
import { clusterNodeArgs, note, report } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const DEVICES = quick ? 300 : 1000;
const REPORTS = quick ? 6000 : 20_000;
const WINDOW = 500;
const FAILOVER_ROUNDS = quick ? 1 : 3;
/** Background load during failovers: every device reports about once every this many ms. */
const BACKGROUND_INTERVAL_MS = 2000;
const SHARDS = 256;
const KEYSPACE = "doppel_bench_cluster";
const STREAM = "DOPPEL_INGRESS";
const TYPE = "thermostat";
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TIMINGS = { heartbeatMs: 500, deadAfterMs: 2000, leaseTtlMs: 2000, ackWaitMs: 10_000 };

// ---- servers ----

function servers(): { nats: string; redis: string; cassandra: string; started: boolean } {
  const env = process.env;
  if (env["DOPPEL_NATS"] && env["DOPPEL_REDIS"] && env["DOPPEL_CASSANDRA"]) {
    return {
      nats: env["DOPPEL_NATS"],
      redis: env["DOPPEL_REDIS"],
      cassandra: env["DOPPEL_CASSANDRA"],
      started: false,
    };
  }
  const own = {
    nats: "nats://127.0.0.1:14222",
    redis: "redis://127.0.0.1:16379",
    cassandra: "127.0.0.1:19042",
  };
  const status = spawnSync("bash", ["scripts/infra/all.sh", "status"], { cwd: ROOT, stdio: "ignore" });
  if (status.status === 0) return { ...own, started: false };
  note("starting NATS, Redis and Cassandra (scripts/infra/all.sh up)...");
  const up = spawnSync("bash", ["scripts/infra/all.sh", "up"], { cwd: ROOT, stdio: "inherit" });
  if (up.status !== 0) throw new Error("scripts/infra/all.sh up failed");
  return { ...own, started: true };
}

// ---- helpers ----

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends `total` items through `send`, at most `window` outstanding. */
async function windowed(total: number, window: number, send: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await send(next++);
  };
  await Promise.all(Array.from({ length: window }, lane));
}

function stats(values: readonly number[]): { min: number; median: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    min: sorted[0] ?? 0,
    median: sorted[Math.floor((sorted.length - 1) / 2)] ?? 0,
    max: sorted.at(-1) ?? 0,
  };
}

// ---- nodes ----

interface Node {
  readonly id: string;
  readonly child: ChildProcess;
  readonly client: DoppelClient;
  readonly spawnedAt: number;
  readonly runningAt: number;
  readonly exited: Promise<void>;
  output: string;
}

const { nats, redis, cassandra, started } = servers();
const run = randomBytes(4).toString("hex");
const clusterName = `bench-${run}`;
const dir = mkdtempSync(join(tmpdir(), "doppel-bench-cluster-"));
const configPath = join(dir, "doppel.json");
writeFileSync(
  configPath,
  JSON.stringify({
    store: {
      kind: "cassandra",
      contactPoints: cassandra.split(","),
      keyspace: KEYSPACE,
      startupRetry: "60s",
    },
  }),
);
const nodes = new Map<string, Node>();

async function startNode(id: string): Promise<Node> {
  const address = `127.0.0.1:${await freePort()}`;
  const spawnedAt = performance.now();
  const child = spawn(
    process.execPath,
    clusterNodeArgs({
      id,
      cluster: clusterName,
      shards: SHARDS,
      listen: address,
      nats,
      redis,
      cassandra,
      config: configPath,
    }),
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let output = "";
  const runningAt = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("is running")) resolve(performance.now());
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then(() => reject(new Error(`node ${id} exited before it was running:\n${output}`)));
  });
  const node: Node = {
    id,
    child,
    client: new DoppelClient(address, { timeoutMs: 30_000 }),
    spawnedAt,
    runningAt,
    exited,
    output,
  };
  // Keep reading (a full pipe would block the node), keeping the last lines for a failure report.
  for (const stream of [child.stdout, child.stderr]) {
    stream?.removeAllListeners("data");
    stream?.on("data", (chunk: Buffer) => {
      node.output = (node.output + chunk.toString()).slice(-20_000);
    });
  }
  nodes.set(id, node);
  return node;
}

async function kill(node: Node, signal: NodeJS.Signals): Promise<void> {
  node.child.kill(signal);
  await node.exited;
  node.client.close();
  nodes.delete(node.id);
}

/** Waits until every node sees `members` and every shard held by the node the ring assigns it to. */
async function settled(members: readonly string[], timeoutMs = 60_000): Promise<number> {
  const assignment = new HashRing([...members]).assignment(SHARDS);
  const wanted = JSON.stringify([...members].sort());
  const until = performance.now() + timeoutMs;
  for (;;) {
    const views = await Promise.all(
      members.map((id) =>
        nodes
          .get(id)!
          .client.cluster()
          .catch(() => undefined),
      ),
    );
    const ok = views.every(
      (view) =>
        view !== undefined &&
        JSON.stringify(view.nodes.map((n) => n.id).sort()) === wanted &&
        view.shards.every((s) => s.holder === assignment[s.shard] && s.assignedTo === assignment[s.shard]),
    );
    if (ok) return performance.now();
    if (performance.now() > until) {
      // What each member sees, and what it logged (warn and above), is what to read first.
      for (const [i, id] of members.entries()) {
        const view = views[i];
        const seen = view ? JSON.stringify(view.nodes.map((n) => n.id).sort()) : "(no answer)";
        const misplaced = view ? view.shards.filter((s) => s.holder !== assignment[s.shard]) : undefined;
        // Who holds them instead ("nobody": free, waiting for an acquisition), by holder → assigned node.
        const moves = new Map<string, number>();
        for (const s of misplaced ?? []) {
          const key = `${s.holder || "nobody"} → ${assignment[s.shard]}`;
          moves.set(key, (moves.get(key) ?? 0) + 1);
        }
        const where = [...moves].map(([move, n]) => `${n} ${move}`).join(", ");
        note(
          `  ${id} sees ${seen}; ${misplaced?.length ?? "?"} shards not held by their assigned node (${where}); last log lines:`,
        );
        note(nodes.get(id)!.output.split("\n").slice(-30).join("\n"));
      }
      throw new Error(`cluster did not settle on ${wanted} in ${timeoutMs} ms`);
    }
    await sleep(20);
  }
}

// ---- devices ----

const wire = await NatsTransport.connect({ servers: nats, name: "bench-cluster-devices" });
const jsm = await jetstreamManager(wire.connection);
await jsm.streams.delete(STREAM).catch(() => false);

async function streamEmpty(): Promise<void> {
  for (;;) {
    const info = await jsm.streams.info(STREAM);
    if (info.state.messages === 0) return;
    await sleep(20);
  }
}

const devices = Array.from(
  { length: DEVICES },
  (_, i) => new DeviceClient({ transport: wire, type: TYPE, id: `bench-${run}-${i}`, ackTimeoutMs: 60_000 }),
);
let sent = 0;
const reportOnce = (i: number) =>
  devices[i % DEVICES]!.report({ temperature: 18 + (sent++ % 50) / 10, heating: i % 2 === 0 });

async function throughput(members: number): Promise<{ reportsPerSecond: number; seconds: number }> {
  note(`  warm-up: one report per device (twins activated on their owners)...`);
  await windowed(DEVICES, WINDOW, reportOnce);
  await streamEmpty();
  note(`  ${REPORTS} reports over ${DEVICES} devices, ${WINDOW} in flight...`);
  const t0 = performance.now();
  await windowed(REPORTS, WINDOW, reportOnce);
  await streamEmpty();
  const seconds = (performance.now() - t0) / 1000;
  const reportsPerSecond = Math.round(REPORTS / seconds);
  note(`  ${members} node(s): ${reportsPerSecond} reports/s persisted (${seconds.toFixed(1)} s)`);
  return { reportsPerSecond, seconds: Math.round(seconds * 10) / 10 };
}

interface JoinResult {
  readonly node: string;
  readonly members: number;
  readonly movedShards: number;
  readonly fromSpawnMs: number;
  readonly fromRunningMs: number;
  readonly startupMs: number;
}

async function joinNode(id: string, before: readonly string[]): Promise<JoinResult> {
  const after = [...before, id];
  const node = await startNode(id);
  const settledAt = await settled(after);
  const old = new HashRing([...before]).assignment(SHARDS);
  const now = new HashRing(after).assignment(SHARDS);
  const result = {
    node: id,
    members: after.length,
    movedShards: now.filter((owner, shard) => owner !== old[shard]).length,
    fromSpawnMs: Math.round(settledAt - node.spawnedAt),
    fromRunningMs: Math.round(settledAt - node.runningAt),
    startupMs: Math.round(node.runningAt - node.spawnedAt),
  };
  note(
    `  ${id} joined: ${result.movedShards} shards moved; settled ${result.fromRunningMs} ms after it was running (${result.fromSpawnMs} ms after spawn)`,
  );
  return result;
}

const output: Record<string, unknown> = {};
try {
  // ---- throughput with 1, 2, 3 nodes; joins ----
  const joins: JoinResult[] = [];
  const perNodes: Record<string, { reportsPerSecond: number; seconds: number }> = {};
  note(`cluster ${clusterName}: ${SHARDS} shards, Cassandra keyspace ${KEYSPACE}`);
  note("1 node:");
  await startNode("n1");
  await settled(["n1"]);
  perNodes["1"] = await throughput(1);
  note("2 nodes:");
  joins.push(await joinNode("n2", ["n1"]));
  perNodes["2"] = await throughput(2);
  note("3 nodes:");
  joins.push(await joinNode("n3", ["n1", "n2"]));
  perNodes["3"] = await throughput(3);

  // ---- failover ----
  const members = ["n1", "n2", "n3"];
  const failovers: {
    killed: string;
    movedShards: number;
    /** `null` when no write (or not every write) to a moved shard succeeded. */
    firstWriteMs: number | null;
    allMovedWrittenMs: number | null;
    allHeldMs: number;
    failedWrites: { shard: number; code: string; message: string; via: string; afterMs: number }[];
  }[] = [];
  let background = true;
  let failedReports = 0;
  const load = (async () => {
    let i = 0;
    while (background) {
      const tick = performance.now();
      const batch = Array.from(
        { length: Math.max(1, Math.round(DEVICES / (BACKGROUND_INTERVAL_MS / 100))) },
        () =>
          reportOnce(i++).catch(() => {
            failedReports++;
          }),
      );
      await Promise.all(batch);
      const wait = 100 - (performance.now() - tick);
      if (wait > 0) await sleep(wait);
    }
  })();
  for (let round = 0; round < FAILOVER_ROUNDS; round++) {
    const victim = members[(round + 1) % members.length]!;
    const survivors = members.filter((id) => id !== victim);
    note(`failover ${round + 1}/${FAILOVER_ROUNDS}: kill -9 ${victim}...`);
    const assignment = new HashRing(members).assignment(SHARDS);
    const moved = assignment.flatMap((owner, shard) => (owner === victim ? [shard] : []));
    const probe = new Map<number, string>();
    for (let n = 0; probe.size < moved.length; n++) {
      const id = `probe-${run}-${round}-${n}`;
      const shard = shardOf(TYPE, id, SHARDS);
      if (moved.includes(shard) && !probe.has(shard)) probe.set(shard, id);
    }
    await sleep(1000);
    const killedAt = performance.now();
    const victimNode = nodes.get(victim)!;
    victimNode.child.kill("SIGKILL");
    // Calls sent only once the process is gone: a call the dead node had already received would
    // wait for its deadline (its outcome is unknown, so the router may not retry it).
    await victimNode.exited;
    victimNode.client.close();
    nodes.delete(victim);
    // A write that fails (its deadline passed, the cluster refused it) is counted and named, not
    // retried: the figures are the successful writes', and the failures are reported beside them.
    const outcomes = await Promise.all(
      [...probe.entries()].map(async ([shard, id], i) => {
        try {
          await nodes.get(survivors[i % survivors.length]!)!.client.invoke({ type: TYPE, id }, "setTarget", {
            celsius: 22,
          });
          return { shard, ms: performance.now() - killedAt };
        } catch (error) {
          const { code, message } = error as { code?: string; message?: string };
          return {
            shard,
            ms: performance.now() - killedAt,
            failed: code ?? String(error),
            message: message ?? String(error),
            via: survivors[i % survivors.length]!,
          };
        }
      }),
    );
    const times = outcomes.filter((o) => o.failed === undefined).map((o) => o.ms);
    const failedWrites = outcomes
      .filter((o) => o.failed !== undefined)
      .map((o) => ({
        shard: o.shard,
        code: o.failed!,
        message: o.message!,
        via: o.via!,
        afterMs: Math.round(o.ms),
      }));
    const heldAt = await settled(survivors);
    const result = {
      killed: victim,
      movedShards: moved.length,
      firstWriteMs: times.length ? Math.round(Math.min(...times)) : null,
      allMovedWrittenMs: failedWrites.length === 0 ? Math.round(Math.max(...times)) : null,
      allHeldMs: Math.round(heldAt - killedAt),
      failedWrites,
    };
    failovers.push(result);
    note(
      `  first write to a moved shard ${result.firstWriteMs} ms after the kill; all ${moved.length} moved shards written after ${result.allMovedWrittenMs ?? "(not all)"} ms; all held by their new owners after ${result.allHeldMs} ms`,
    );
    for (const f of failedWrites)
      note(
        `  FAILED: the write to moved shard ${f.shard} through ${f.via} ended ${f.code} after ${f.afterMs} ms: ${f.message}`,
      );
    if (failedWrites.length > 0) {
      // What the survivors logged (warn and above) is the first thing to read about a failed write.
      for (const id of survivors)
        note(`  ${id}'s last log lines:\n${nodes.get(id)!.output.split("\n").slice(-40).join("\n")}`);
    }
    note(`  restarting ${victim}...`);
    joins.push(await joinNode(victim, survivors));
  }
  background = false;
  await load;
  await streamEmpty();

  output["throughput"] = {
    reportsPerSecond: Object.fromEntries(Object.entries(perNodes).map(([n, r]) => [n, r.reportsPerSecond])),
    vsOneNode: Object.fromEntries(
      Object.entries(perNodes).map(([n, r]) => [
        n,
        Math.round((r.reportsPerSecond / perNodes["1"]!.reportsPerSecond) * 100) / 100,
      ]),
    ),
    note: "all nodes on one machine: with N nodes the same cores are shared by N processes (plus NATS, Redis, Cassandra and the devices), so this shows the cluster's overhead, not scaling",
  };
  output["rebalanceOnJoin"] = {
    fromRunningMs: stats(joins.map((j) => j.fromRunningMs)),
    fromSpawnMs: stats(joins.map((j) => j.fromSpawnMs)),
    joins,
  };
  const known = (values: readonly (number | null)[]) => values.filter((v): v is number => v !== null);
  output["failover"] = {
    firstWriteMs: stats(known(failovers.map((f) => f.firstWriteMs))),
    allMovedWrittenMs: stats(known(failovers.map((f) => f.allMovedWrittenMs))),
    failedWrites: failovers.reduce((n, f) => n + f.failedWrites.length, 0),
    allHeldMs: stats(failovers.map((f) => f.allHeldMs)),
    floor: `declared dead ${TIMINGS.deadAfterMs} ms after the last heartbeat; leases expire at most ${TIMINGS.leaseTtlMs} ms after their last renewal`,
    rounds: failovers,
    backgroundReportsFailed: failedReports,
  };
} finally {
  for (const node of [...nodes.values()]) await kill(node, "SIGTERM").catch(() => undefined);
  await Promise.all(devices.map((d) => d.close()));
  await jsm.streams.delete(STREAM).catch(() => false);
  await wire.close();
  rmSync(dir, { recursive: true, force: true });
  if (started) spawnSync("bash", ["scripts/infra/all.sh", "down"], { cwd: ROOT, stdio: "inherit" });
}

report("cluster", {
  command: "npm run bench:cluster",
  setup: {
    machine: `${(await import("node:os")).cpus().length} cores: every node, NATS, Redis, Cassandra and the simulated devices share them`,
    nodes: "separate processes: node bin/doppel.js start --nats --redis --cassandra --cluster --shards 256",
    store: "Cassandra 5.0, one node, RF 1",
    timings: TIMINGS,
    devices: DEVICES,
    reportsPerPhase: REPORTS,
    window: WINDOW,
    failoverRounds: FAILOVER_ROUNDS,
  },
  ...output,
});
