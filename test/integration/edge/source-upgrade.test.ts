import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { DoppelNode, EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EDGE_SOURCE_CONSUMER, isEdgeSource } from "../../../runtime/devices/edge/durable-source.ts";
import { edgeSourceRegistered } from "../../../runtime/devices/edge/edge-stream.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../../support/eventually.ts";
import { account, type DeviceRun, readLogs, reportedValue, reportUntil } from "../chaos/exactly-once.ts";
import {
  cloudNodeConfig,
  edgeNodeConfig,
  HUB_DOMAIN,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-up";
const DEVICES = 5;
const INGRESS = "DOPPEL_INGRESS";

/**
 * An edge registered by an older edge node (its stream sourced by the hub through an ephemeral
 * consumer, no DOPPEL_CLOUD_SOURCE) is switched to durable sourcing when a current edge node starts,
 * while its devices keep reporting. The new consumer starts from the edge stream's first message,
 * which may hold reports the old source forwarded already (nothing trims while no edge node runs):
 * the hub's source position, the ingress stream's message ids and the twins' per-device sequence
 * numbers must drop them. Every acknowledged report reaches its cloud twin exactly once, in order.
 */
describe("thin edge: upgrade from an ephemeral source to durable sourcing", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode | undefined;
  const store = new MemoryEventStore();
  const edgeConfig = () =>
    edgeNodeConfig(
      "edge",
      leaf,
      { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms" },
      { metrics: { listen: false } },
    );

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("upgrade", EDGE));
    cloud = await DoppelNode.start(cloudNodeConfig("cloud", hub), {
      twins: [Thermostat],
      store,
      logger: silentLogger(),
    });
  });
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("re-registers the source with the durable consumer; no acknowledged report is lost, duplicated or reordered", async () => {
    // The edge stream and its registration, as a current node makes them; then made old by hand.
    edge = await EdgeNode.start(edgeConfig(), { logger: silentLogger() });
    await linkUp(edge);
    const edgeStream = edge.config.edge?.buffer.stream ?? "DOPPEL_EDGE";
    await edge.stop();
    edge = undefined;

    const hubWire = await NatsTransport.connect({ servers: hub.url, name: "upgrade-hub" });
    const leafWire = await NatsTransport.connect({ servers: leaf.url, name: "upgrade-leaf" });
    const devicesWire = await NatsTransport.connect({
      servers: leaf.url,
      name: "upgrade-devices",
      reconnectTimeWaitMs: 100,
    });
    const hubJsm = await jetstreamManager(hubWire.connection);
    const ingressConfig = async (): Promise<StreamConfig> => (await hubJsm.streams.info(INGRESS)).config;
    const old = await ingressConfig();
    await hubJsm.streams.update(INGRESS, {
      ...old,
      sources: (old.sources ?? []).map((s) => {
        if (!isEdgeSource(s, EDGE)) return s;
        const { consumer: _durable, ...ephemeral } = s;
        return ephemeral;
      }),
    });
    await (await jetstreamManager(leafWire.connection)).consumers.delete(edgeStream, EDGE_SOURCE_CONSUMER);
    expect(edgeSourceRegistered(await ingressConfig(), EDGE)).toBe(false);

    const devices = Array.from(
      { length: DEVICES },
      (_, i) =>
        new DeviceClient({ transport: devicesWire, type: "thermostat", id: `up-t${i}`, ackTimeoutMs: 5000 }),
    );
    const runs: DeviceRun[] = devices.map((d) => ({ ref: d.ref, acked: [], resent: 0 }));
    let running = true;
    const load = devices.map((d, i) => reportUntil(d, runs[i]!, () => running));
    const acked = () => runs.reduce((n, r) => n + r.acked.length, 0);
    const cloudValue = async (run: DeviceRun) =>
      reportedValue((await cloud.twins.get(run.ref).catch(() => undefined))?.reported["temperature"]);
    try {
      // No edge node runs: the edge stream acknowledges, the old ephemeral source forwards.
      await eventually(() => (acked() >= 100 ? true : undefined), "acks from the edge stream", 60_000);
      await eventually(
        async () => ((await cloudValue(runs[0]!)) !== undefined ? true : undefined),
        "a report forwarded by the old source",
        90_000,
      );

      edge = await EdgeNode.start(edgeConfig(), { logger: silentLogger() });
      await eventually(
        async () => (edgeSourceRegistered(await ingressConfig(), EDGE) ? true : undefined),
        "the source re-registered with the durable consumer",
        60_000,
      );
      const upgradedAt = acked();
      await eventually(
        () => (acked() >= upgradedAt + 100 ? true : undefined),
        "acks after the upgrade",
        60_000,
      );
      running = false;
      await Promise.all(load);

      const finals = new Map<string, unknown>();
      await eventually(
        async () => {
          for (const run of runs) finals.set(`${run.ref.type}/${run.ref.id}`, await cloudValue(run));
          return runs.every((r) => finals.get(`${r.ref.type}/${r.ref.id}`) === r.acked.at(-1))
            ? true
            : undefined;
        },
        "every cloud twin at its device's last acknowledged report",
        120_000,
      );
      const current = edge;
      await eventually(
        () => (current.status.backlog === 0 ? true : undefined),
        "the edge backlog drained",
        60_000,
      );
      // The reports after the upgrade went through the durable consumer.
      const durable = await (await jetstreamManager(leafWire.connection)).consumers.info(
        edgeStream,
        EDGE_SOURCE_CONSUMER,
      );
      expect(durable.delivered.stream_seq).toBeGreaterThanOrEqual(acked());
      const { logs, quarantined } = await readLogs(
        runs,
        (ref) => cloud.twins.history(ref, { limit: 10_000 }),
        async (ref) => (await store.loadTwin(ref)).quarantine !== undefined,
      );
      const result = account(runs, logs, finals);
      expect(result.acknowledged).toBeGreaterThanOrEqual(upgradedAt + 100);
      expect({ ...result, quarantined }).toEqual({
        acknowledged: result.acknowledged,
        lost: 0,
        superseded: 0,
        duplicated: 0,
        outOfOrder: 0,
        wrongFinal: 0,
        quarantined: 0,
      });
    } finally {
      running = false;
      await Promise.allSettled(load);
      for (const d of devices) await d.close();
      await devicesWire.close();
      await leafWire.close();
      await hubWire.close();
    }
  }, 400_000);
});
