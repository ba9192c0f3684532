/**
 * Ingest bench: device reports through NATS JetStream into twins, persisted.
 *
 * - A node runs as its own process, started with the real CLI (`doppel start --nats URL`, the
 *   embedded SQLite store with fsync on every commit, 256 shards — so 256 shard consumers — unless
 *   `BENCH_SHARDS` says otherwise: JetStream's cost grows with the number of consumers).
 * - **Throughput**: simulated devices (the `DeviceClient` SDK, one NATS connection) send
 *   `REPORTS` reports over `DEVICES` twins, at most `WINDOW` unacknowledged at once; the clock stops
 *   when the ingress stream is empty again — every report acknowledged to JetStream, which Doppel
 *   does only after the twin's events are persisted.
 * - **Latency**: while devices keep a background load, probe reports are timed from the device's
 *   publish to the change being visible through gRPC `GetTwin` (polled).
 * - **Bare baseline**, same run, same server: the same messages JetStream-published (same window)
 *   into a scratch work-queue stream and consumed + acked by one pull consumer, no runtime; latency
 *   = publish → consumed.
 *
 *   npm run bench:ingest     (DOPPEL_NATS to use your server; else scripts/infra/nats.sh up;
 *                             BENCH_QUICK=1 for a short run; BENCH_STORE=cassandra for the
 *                             Cassandra store, with DOPPEL_CASSANDRA or scripts/infra/cassandra.sh up;
 *                             BENCH_SHARDS=N for a node with N shards, default 256)
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { DoppelClient } from "../runtime/grpc/client.ts";
import { freePort } from "../runtime/testing/free-port.ts";
import { histogram, note, percentiles, report } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
/** `BENCH_STORE=cassandra` runs the node on Cassandra (DOPPEL_CASSANDRA, else the script's server). */
const STORE = process.env["BENCH_STORE"] === "cassandra" ? "cassandra" : "sqlite";
const STORE_ARGS = (dataDir: string): string[] =>
  STORE === "cassandra"
    ? ["--cassandra", process.env["DOPPEL_CASSANDRA"] ?? "127.0.0.1:19042"]
    : ["--store", "sqlite", "--data", dataDir];
const DEVICES = quick ? 200 : 1000;
const REPORTS = quick ? 10_000 : 40_000;
const WINDOW = 1000;
const PROBES = quick ? 100 : 300;
const BACKGROUND_PER_SECOND = 500;
/** The node's shard count (`--shards`): one durable JetStream consumer per shard. */
const SHARDS = Number(process.env["BENCH_SHARDS"] ?? 256);
if (!Number.isInteger(SHARDS) || SHARDS < 1) throw new Error(`BENCH_SHARDS must be a positive integer`);
const ROOT = fileURLToPath(new URL("..", import.meta.url));

function natsServer(): { url: string; started: boolean } {
  if (process.env["DOPPEL_NATS"]) return { url: process.env["DOPPEL_NATS"], started: false };
  const status = spawnSync("bash", ["scripts/infra/nats.sh", "status"], { cwd: ROOT, stdio: "ignore" });
  if (status.status !== 0) {
    note("starting nats-server (scripts/infra/nats.sh up)...");
    const up = spawnSync("bash", ["scripts/infra/nats.sh", "up"], { cwd: ROOT, stdio: "inherit" });
    if (up.status !== 0) throw new Error("scripts/infra/nats.sh up failed");
    return { url: "nats://127.0.0.1:14222", started: true };
  }
  return { url: "nats://127.0.0.1:14222", started: false };
}

async function startNode(
  nats: string,
  dataDir: string,
): Promise<{ child: ChildProcess; address: string; startMs: number }> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [
      "bin/doppel.js",
      "start",
      "--nats",
      nats,
      ...STORE_ARGS(dataDir),
      "--listen",
      address,
      "--no-demo",
      "--shards",
      String(SHARDS),
      "--log-level",
      "warn",
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      // Configured by its flags alone: DOPPEL_REDIS/CASSANDRA in the shell would make it a cluster node.
      env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_"))),
    },
  );
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("is running")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`node exited (${code}) before it was ready: ${out}`)));
  });
  return { child, address, startMs: Date.now() - started };
}

async function streamEmpty(jsm: Awaited<ReturnType<typeof jetstreamManager>>, stream: string): Promise<void> {
  for (;;) {
    const info = await jsm.streams.info(stream);
    if (info.state.messages === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sends `total` items through `send`, at most `window` outstanding. */
async function windowed(total: number, window: number, send: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await send(next++);
  };
  await Promise.all(Array.from({ length: window }, lane));
}

const { url, started } = natsServer();
const dataDir = mkdtempSync(join(tmpdir(), "doppel-bench-ingest-"));
const wire = await NatsTransport.connect({ servers: url, name: "bench-devices" });
const jsm = await jetstreamManager(wire.connection);
await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);
note(`node: doppel start --nats ${url} (${STORE}, ${SHARDS} shards)...`);
const node = await startNode(url, dataDir);
note(`  ready in ${node.startMs} ms`);
const grpc = new DoppelClient(node.address, { timeoutMs: 30_000 });

try {
  // ---- throughput ----
  const devices = Array.from(
    { length: DEVICES },
    (_, i) =>
      new DeviceClient({ transport: wire, type: "thermostat", id: `bench-${i}`, ackTimeoutMs: 60_000 }),
  );
  note(`warm-up: one report per device (${DEVICES} twins activated)...`);
  await windowed(DEVICES, WINDOW, (i) => devices[i]!.report({ temperature: 20, heating: false }));
  await streamEmpty(jsm, "DOPPEL_INGRESS");
  note(`throughput: ${REPORTS} reports over ${DEVICES} devices, ${WINDOW} in flight...`);
  const t0 = performance.now();
  await windowed(REPORTS, WINDOW, (i) =>
    devices[i % DEVICES]!.report({ temperature: 15 + (i % 200) / 10, heating: i % 2 === 0 }),
  );
  const published = performance.now();
  await streamEmpty(jsm, "DOPPEL_INGRESS");
  const elapsed = (performance.now() - t0) / 1000;
  const reportsPerSecond = Math.round(REPORTS / elapsed);
  note(
    `  ${reportsPerSecond} reports/s persisted (all published in ${Math.round(published - t0)} ms, persisted in ${Math.round(elapsed * 1000)} ms)`,
  );

  // ---- latency: publish → visible through GetTwin, under background load ----
  note(`latency: ${PROBES} probes, ${BACKGROUND_PER_SECOND} background reports/s...`);
  let stop = false;
  const background = (async () => {
    let i = 0;
    while (!stop) {
      const tick = performance.now();
      const batch = Array.from({ length: BACKGROUND_PER_SECOND / 10 }, () =>
        devices[i++ % DEVICES]!.report({ temperature: 20 + (i % 50) / 10 }),
      );
      await Promise.all(batch);
      const wait = 100 - (performance.now() - tick);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  const probe = new DeviceClient({ transport: wire, type: "thermostat", id: "bench-probe" });
  const latency = histogram();
  for (let p = 0; p < PROBES; p++) {
    const value = Math.round((10 + (p % 100) / 10) * 100) / 100 + (p % 2 ? 0.001 : 0.002);
    const start = performance.now();
    await probe.report({ temperature: value });
    for (;;) {
      const view = await grpc.getTwin({ type: "thermostat", id: "bench-probe" }).catch(() => undefined);
      if (view?.reported["temperature"] === value) break;
    }
    latency.recordValue(Math.round((performance.now() - start) * 1000));
  }
  stop = true;
  await background;
  await streamEmpty(jsm, "DOPPEL_INGRESS");
  const runtimeLatency = percentiles(latency);
  note(`  publish → GetTwin: ${JSON.stringify(runtimeLatency)}`);

  // ---- bare baseline: JetStream publish + consume + ack, no runtime ----
  note(`bare baseline: ${REPORTS} messages through a scratch work-queue stream...`);
  const BARE = "DOPPEL_BENCH_BARE";
  await jsm.streams.delete(BARE).catch(() => false);
  await jsm.streams.add({
    name: BARE,
    subjects: ["doppelbench.dev.*.*.reported"],
    retention: RetentionPolicy.Workqueue,
    subject_transform: {
      src: "doppelbench.dev.*.*.*",
      dest: `doppelbench.in.{{partition(${SHARDS},1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}`,
    },
  });
  await jsm.consumers.add(BARE, {
    durable_name: "bare",
    ack_policy: AckPolicy.Explicit,
    max_ack_pending: 10_000,
  });
  const js = jetstream(wire.connection);
  const bareLatency = histogram();
  let consumed = 0;
  let allConsumed: () => void = () => {};
  const done = new Promise<void>((resolve) => (allConsumed = resolve));
  const probes = new Map<string, () => void>();
  const consumer = await js.consumers.get(BARE, "bare");
  const messages = await consumer.consume({
    max_messages: 1000,
    callback: (m) => {
      m.ack();
      const probe = m.headers?.get("Probe");
      if (probe) probes.get(probe)?.();
      if (++consumed === REPORTS) allConsumed();
    },
  });
  const body = new TextEncoder().encode(JSON.stringify({ temperature: 21.5, heating: false }));
  const b0 = performance.now();
  await windowed(REPORTS, WINDOW, (i) =>
    wire.publishDurable(`doppelbench.dev.thermostat.bench-${i % DEVICES}.reported`, body, {
      messageId: `bare-${i}`,
      timeoutMs: 60_000,
    }),
  );
  await done;
  await streamEmpty(jsm, BARE);
  const bareSeconds = (performance.now() - b0) / 1000;
  // Latency as for the runtime: probes (publish → consumed) under the same background rate.
  let bareStop = false;
  let bareSent = 0;
  const bareBackground = (async () => {
    while (!bareStop) {
      const tick = performance.now();
      await Promise.all(
        Array.from({ length: BACKGROUND_PER_SECOND / 10 }, () =>
          wire.publishDurable(`doppelbench.dev.thermostat.bench-${bareSent % DEVICES}.reported`, body, {
            messageId: `bare-bg-${bareSent++}`,
            timeoutMs: 60_000,
          }),
        ),
      );
      const wait = 100 - (performance.now() - tick);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  for (let p = 0; p < PROBES; p++) {
    const id = `probe-${p}`;
    const seen = new Promise<void>((resolve) => probes.set(id, resolve));
    const start = performance.now();
    await wire.publishDurable("doppelbench.dev.thermostat.bench-probe.reported", body, {
      messageId: id,
      timeoutMs: 60_000,
      headers: new Map([["Probe", id]]),
    });
    await seen;
    bareLatency.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
  }
  bareStop = true;
  await bareBackground;
  await messages.close();
  await jsm.streams.delete(BARE);
  const barePerSecond = Math.round(REPORTS / bareSeconds);
  const bare = percentiles(bareLatency);
  note(`  ${barePerSecond} messages/s; publish → consumed ${JSON.stringify(bare)}`);

  report("ingest", {
    command: [
      ...(STORE === "cassandra" ? ["BENCH_STORE=cassandra"] : []),
      ...(process.env["BENCH_SHARDS"] === undefined ? [] : [`BENCH_SHARDS=${SHARDS}`]),
      "npm run bench:ingest",
    ].join(" "),
    store: STORE,
    setup: {
      nats: "nats-server v2.15.3, JetStream file store, sync_interval always, loopback",
      node:
        STORE === "cassandra"
          ? `separate process: doppel start --nats --cassandra (Cassandra 5.0 single node, commitlog batch), ${SHARDS} shard consumers`
          : `separate process: doppel start --nats (sqlite store, synchronous full), ${SHARDS} shard consumers`,
      devices: DEVICES,
      reports: REPORTS,
      window: WINDOW,
      nodeStartMs: node.startMs,
    },
    runtime: {
      reportsPerSecond,
      latencyMs: runtimeLatency,
      latency: `device publish → visible through GetTwin (polled), ${PROBES} probes under ${BACKGROUND_PER_SECOND} reports/s`,
    },
    bareBaseline: {
      messagesPerSecond: barePerSecond,
      latencyMs: bare,
      latency: `JetStream publish → consumed (and acked) by one pull consumer, ${PROBES} probes under ${BACKGROUND_PER_SECOND} messages/s`,
    },
    runtimeVsBare: Math.round((reportsPerSecond / barePerSecond) * 1000) / 1000,
  });
} finally {
  grpc.close();
  node.child.kill("SIGTERM");
  await new Promise((resolve) => node.child.once("exit", resolve));
  await jsm.streams.delete("DOPPEL_INGRESS").catch(() => false);
  await wire.close();
  rmSync(dataDir, { recursive: true, force: true });
  if (started) spawnSync("bash", ["scripts/infra/nats.sh", "down"], { cwd: ROOT, stdio: "inherit" });
}
