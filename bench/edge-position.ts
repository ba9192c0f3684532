/**
 * bench:edge-position — what a thin edge's tick costs to learn how far the cloud stored its
 * source: asking a cloud node (`doppel.edge.<edge>.register`, the registrar reads the ingress
 * stream's info and answers the position: what the edge does now) beside reading the ingress
 * stream's info itself through the cloud's JetStream API across the link (`$JS.cloud.API`, what
 * it did before, and what a locked hub no longer allows). Same servers, same source, same answer
 * (the source's `seq`); rounds interleaved, the order alternating.
 *
 * Two real nats-servers (hub, domain `cloud`, open so the baseline may use the API; leaf written
 * by `leafServerConfig`), a cloud node (the registrar) and an edge node (its source registered).
 *
 *   npm run bench:edge-position   (BENCH_ROUNDS=6 BENCH_READS=300)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { edgeInboxPrefix } from "../runtime/devices/edge/edge-subjects.ts";
import { requestSourceRegistration, sourcePositionOf } from "../runtime/devices/edge/source-registration.ts";
import { EdgeNode } from "../runtime/node/edge-node.ts";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { MemoryEventStore } from "../runtime/persistence/memory-store.ts";
import {
  cloudNodeConfig,
  edgeNodeConfig,
  startHub,
  startLeaf,
  startRelay,
} from "../test/integration/edge/edge-servers.ts";
import { Thermostat } from "../twins/thermostat.ts";
import { histogram, loadAverage, percentiles, report } from "./lib.ts";

const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 6);
const READS = Number(process.env["BENCH_READS"] ?? 300);
const EDGE = "bench-pos";
const INGRESS = "DOPPEL_INGRESS";

const dir = mkdtempSync(join(tmpdir(), "doppel-bench-edge-position-"));
const hub = await startHub(dir);
const relay = await startRelay(hub.leafPort);
const leaf = await startLeaf(dir, EDGE, relay.url);
// The node's default shard count (the edge tests' cloud node runs 4).
const cloud = await DoppelNode.start(
  { ...cloudNodeConfig("bench-cloud", hub), shards: 256 },
  { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
);
const edge = await EdgeNode.start(edgeNodeConfig("bench-edge", leaf, { name: EDGE, tick: "1s" }), {
  logger: silentLogger(),
});
const wire = await NatsTransport.connect({
  servers: leaf.url,
  name: "bench-position",
  inboxPrefix: edgeInboxPrefix(EDGE),
});
const cloudApi = await jetstreamManager(wire.connection, { domain: "cloud", timeout: 5000, checkAPI: false });

const ways = {
  /** Now: one request to a cloud node, which reads the stream's info and answers the position. */
  registrar: async () =>
    (await requestSourceRegistration(wire.connection, EDGE, { kind: "thin", stream: "DOPPEL_EDGE" }, 5000))
      .seq,
  /** Before: the stream's info through the cloud's JetStream API, the position read from it. */
  streamInfo: async () => sourcePositionOf(await cloudApi.streams.info(INGRESS), EDGE)?.seq,
};

try {
  // Both ways must see the source: wait until the registrar has registered it.
  for (;;) {
    if ((await ways.streamInfo().catch(() => undefined)) !== undefined) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const hists = { registrar: histogram(), streamInfo: histogram() };
  const perRound: Record<string, number[]> = { registrar: [], streamInfo: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = (
      round % 2 === 0 ? ["registrar", "streamInfo"] : ["streamInfo", "registrar"]
    ) as (keyof typeof ways)[];
    for (const way of order) {
      const round_ = histogram();
      for (let i = 0; i < READS; i++) {
        const start = performance.now();
        await ways[way]();
        const us = (performance.now() - start) * 1000;
        hists[way].recordValue(us);
        round_.recordValue(us);
      }
      perRound[way]!.push(percentiles(round_).p50);
    }
  }
  const registrar = percentiles(hists.registrar);
  const streamInfo = percentiles(hists.streamInfo);
  report("edge-position", {
    rounds: ROUNDS,
    readsPerRound: READS,
    registrarMs: registrar,
    streamInfoMs: streamInfo,
    p50Ratio: Math.round((registrar.p50 / streamInfo.p50) * 100) / 100,
    p99Ratio: Math.round((registrar.p99 / streamInfo.p99) * 100) / 100,
    roundP50sMs: perRound,
    load: loadAverage(),
  });
} finally {
  await wire.close();
  await edge.stop();
  await cloud.stop();
  await leaf.stop();
  await relay.stop();
  await hub.stop();
  rmSync(dir, { recursive: true, force: true });
}
