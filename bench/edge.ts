/**
 * bench:edge — a thin edge's own ingest rate and its catch-up after an outage, beside bare
 * JetStream sourcing of the same messages without Doppel, interleaved round by round.
 *
 * Two real nats-servers (hub, domain `cloud`; leaf written by `leafServerConfig`), the leaf link
 * through a relay the bench cuts. Each round, for Doppel and for the baseline (order alternating):
 * cut the link, publish REPORTS reports from DEVICES concurrent devices at the edge, each waiting
 * for its ack (edge ingest rate), restore the link and time until the hub's source stored the
 * first of them (resume), until it stored all of them (forwarded; the catch-up rate is counted
 * from the resume, and separately from the link's return) and until they were consumed (Doppel:
 * applied to the twins and persisted, the ingress stream empty; baseline: pulled and acked by a
 * plain consumer). Before the rounds each side forwards one message, so no round starts while
 * the hub's first source consumer is still being created (see docs/edge.md, "Source resume").
 *
 * Doppel: `DeviceClient.report` (Doppel-Seq, message id) → DOPPEL_EDGE → source → DOPPEL_INGRESS
 * (subject transform to shards) → cloud node (memory store, BENCH_SHARDS shards) → twin.
 * Baseline: `js.publish` of the same JSON with a message id → BARE_EDGE (limits, same limits) →
 * source → BARE_INGRESS (work queue, file, sync always) → one pull consumer acking each message.
 *
 *   npm run bench:edge            (BENCH_ROUNDS=5 BENCH_REPORTS=20000 BENCH_DEVICES=50 BENCH_SHARDS=16 BENCH_OUTAGE_S=0)
 *
 * BENCH_OUTAGE_S holds the link cut at least that long (the resume wait depends on it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { DeviceClient } from "../runtime/devices/client/device-client.ts";
import { domainApi } from "../runtime/devices/edge/durable-source.ts";
import { EdgeNode } from "../runtime/node/edge-node.ts";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { MemoryEventStore } from "../runtime/persistence/memory-store.ts";
import { cloudNodeConfig, startHub, startLeaf, startRelay } from "../test/integration/edge/edge-servers.ts";
import { Thermostat } from "../twins/thermostat.ts";
import { histogram, loadAverage, note, percentiles, report, summary } from "./lib.ts";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 5);
const REPORTS = Number(process.env["BENCH_REPORTS"] ?? 20000);
const DEVICES = Number(process.env["BENCH_DEVICES"] ?? 50);
const SHARDS = Number(process.env["BENCH_SHARDS"] ?? 16);
/** Seconds the link stays cut at least (longer than the publishing, when set). */
const OUTAGE_S = Number(process.env["BENCH_OUTAGE_S"] ?? 0);
const EDGE = "bench-edge";

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 300_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Runs `perDevice(device)` for every device concurrently; resolves with the elapsed seconds. */
async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return (performance.now() - start) / 1000;
}

const dir = mkdtempSync(join(tmpdir(), "doppel-bench-edge-"));
const hub = await startHub(dir);
const relay = await startRelay(hub.leafPort);
const leaf = await startLeaf(dir, EDGE, relay.url);
const cloud = await DoppelNode.start(
  {
    ...cloudNodeConfig("bench-cloud", hub, {
      consumer: { ackWait: "30s", maxAckPending: 512, maxInFlightPerTwin: 8 },
    }),
    shards: SHARDS,
  },
  { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
);
const edge = await EdgeNode.start(
  {
    nodeId: "bench-edge",
    grpc: { listen: false },
    log: { level: "silent" },
    nats: { servers: leaf.url },
    edge: { name: EDGE, tick: "200ms" },
  },
  { logger: silentLogger() },
);
const hubWire = await NatsTransport.connect({ servers: hub.url, name: "bench-hub" });
const leafWire = await NatsTransport.connect({
  servers: leaf.url,
  name: "bench-devices",
  reconnectTimeWaitMs: 100,
});
const hubJsm = await jetstreamManager(hubWire.connection);
const leafJsm = await jetstreamManager(leafWire.connection);
const leafJs = jetstream(leafWire.connection);

// The baseline's streams: the same shape, no Doppel.
await leafJsm.streams.add({
  name: "BARE_EDGE",
  subjects: ["bare.dev.*.*.reported"],
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  max_bytes: 1024 ** 3,
});
await hubJsm.streams.add({
  name: "BARE_INGRESS",
  retention: RetentionPolicy.Workqueue,
  storage: StorageType.File,
  sources: [{ name: "BARE_EDGE", external: { api: domainApi(EDGE), deliver: "" } }],
});
await hubJsm.consumers.add("BARE_INGRESS", {
  durable_name: "bare",
  ack_policy: AckPolicy.Explicit,
  max_ack_pending: 512,
});
const bareConsumer = await jetstream(hubWire.connection).consumers.get("BARE_INGRESS", "bare");
const bareMessages = await bareConsumer.consume({ max_messages: 256 });
void (async () => {
  for await (const m of bareMessages) {
    JSON.parse(new TextDecoder().decode(m.data));
    m.ack();
  }
})();

await until(async () => edge.status.linkUp, "the edge reaches the cloud");
const devices = Array.from(
  { length: DEVICES },
  (_, i) =>
    new DeviceClient({ transport: leafWire, type: "thermostat", id: `bench-t${i}`, ackTimeoutMs: 30_000 }),
);

const sourceSeq = async (stream: string) => {
  const info = await hubJsm.streams.info(stream);
  return { seq: ((info.sources?.[0] ?? {}) as { seq?: number }).seq ?? 0, messages: info.state.messages };
};

/** Whether the edge's connection still reaches the hub's JetStream (the link is up). */
const leafToHub = await jetstreamManager(leafWire.connection, { domain: "cloud", timeout: 1000 });
const edgeSees = (stream: string) =>
  leafToHub.streams.info(stream === "DOPPEL_EDGE" ? "DOPPEL_INGRESS" : "BARE_INGRESS").then(
    () => true,
    () => false,
  );

let value = 0;
interface Phase {
  ingestPerS: number;
  /** Seconds from the link's return until the hub's source stored the first backlog message. */
  resumeS: number;
  /** Reports/s from that first message until all were stored: the catch-up rate proper. */
  catchUpPerS: number;
  /** Reports/s from the link's return until all were stored (the resume wait included). */
  forwardPerS: number;
  consumedPerS: number;
}

async function outage(publish: () => Promise<unknown>, stream: string, edgeStream: string): Promise<Phase> {
  await relay.cut();
  const cutAt = performance.now();
  await until(async () => !(await edgeSees(edgeStream)), "the link is down");
  const ingest = await timed(publish);
  const rest = OUTAGE_S * 1000 - (performance.now() - cutAt);
  if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
  const stored = (await leafJsm.streams.info(edgeStream)).state.last_seq;
  const before = (await sourceSeq(stream)).seq;
  const restoredAt = performance.now();
  await relay.restore();
  await until(async () => (await sourceSeq(stream)).seq > before, `${stream} resumed`);
  const resumed = (performance.now() - restoredAt) / 1000;
  await until(async () => (await sourceSeq(stream)).seq >= stored, `${stream} forwarded`);
  const forwarded = (performance.now() - restoredAt) / 1000;
  await until(async () => (await sourceSeq(stream)).messages === 0, `${stream} consumed`);
  const consumed = (performance.now() - restoredAt) / 1000;
  return {
    ingestPerS: REPORTS / ingest,
    resumeS: resumed,
    catchUpPerS: REPORTS / Math.max(forwarded - resumed, 0.001),
    forwardPerS: REPORTS / forwarded,
    consumedPerS: REPORTS / consumed,
  };
}

const perDevice = Math.ceil(REPORTS / DEVICES);
/** Each report's ack latency at the edge (µs), per side, over all rounds. */
const acks = { doppel: histogram(), bare: histogram() };
async function acked(into: ReturnType<typeof histogram>, publish: () => Promise<unknown>): Promise<void> {
  const sent = performance.now();
  await publish();
  into.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
}
const doppelRound = () =>
  outage(
    () =>
      Promise.all(
        devices.map(async (device) => {
          for (let i = 0; i < perDevice; i++)
            await acked(acks.doppel, () => device.report({ temperature: (value++ % 10_000) / 100 }));
        }),
      ),
    "DOPPEL_INGRESS",
    "DOPPEL_EDGE",
  );
let bareId = 0;
const bareRound = () =>
  outage(
    () =>
      Promise.all(
        devices.map(async (_, d) => {
          for (let i = 0; i < perDevice; i++) {
            const h = headers();
            h.set("Nats-Msg-Id", `bare-${bareId++}`);
            await acked(acks.bare, () =>
              leafJs.publish(
                `bare.dev.thermostat.bench-t${d}.reported`,
                JSON.stringify({ temperature: (value++ % 10_000) / 100 }),
                { headers: h },
              ),
            );
          }
        }),
      ),
    "BARE_INGRESS",
    "BARE_EDGE",
  );

const results: { doppel: Phase[]; bare: Phase[] } = { doppel: [], bare: [] };
const loads: string[] = [];
try {
  // Warm-up: one message through each source, so both hub source consumers are established.
  await devices[0]?.report({ temperature: 20 });
  await leafJs.publish("bare.dev.thermostat.warm-up.reported", JSON.stringify({ temperature: 20 }));
  for (const stream of ["DOPPEL_INGRESS", "BARE_INGRESS"])
    await until(async () => (await sourceSeq(stream)).seq >= 1, `${stream} warmed up`);
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (["doppel", "bare"] as const) : (["bare", "doppel"] as const);
    for (const side of order) {
      const phase = side === "doppel" ? await doppelRound() : await bareRound();
      results[side].push(phase);
      loads.push(loadAverage());
      note(`round ${round + 1} ${side}: ${JSON.stringify(phase)} load ${loads.at(-1)}`);
    }
  }
} finally {
  bareMessages.stop();
  for (const d of devices) await d.close();
  await leafWire.close();
  await hubWire.close();
  await edge.stop();
  await cloud.stop();
  await leaf.stop();
  await relay.stop();
  await hub.stop();
  rmSync(dir, { recursive: true, force: true });
}
const figure = (side: Phase[], key: keyof Phase) =>
  summary(side.map((p) => (key === "resumeS" ? Math.round(p[key] * 1000) / 1000 : Math.round(p[key]))));
const out: Record<string, unknown> = {
  rounds: ROUNDS,
  reports: REPORTS,
  devices: DEVICES,
  shards: SHARDS,
  outageS: OUTAGE_S,
  loadAverages: loads,
};
for (const key of ["ingestPerS", "resumeS", "catchUpPerS", "forwardPerS", "consumedPerS"] as const) {
  const a = figure(results.doppel, key);
  const b = figure(results.bare, key);
  out[key] = { doppel: a, bare: b, ratio: Math.round((a.median / b.median) * 1000) / 1000 };
}
out["ingestAckMs"] = { doppel: percentiles(acks.doppel), bare: percentiles(acks.bare) };
report("edge", out);
