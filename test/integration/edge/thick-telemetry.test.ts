import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { DoppelNode, EdgeNode, NatsTransport } from "doppel/node";
import { ManualClock } from "doppel/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
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

const EDGE = "plant-tt";
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SECOND = 1000;
const RANGE = { since: T0 - 3_600_000, until: T0 + 3_600_000 };

/**
 * Telemetry of twins that run at a thick edge (thermostats here, with the thermostat's `static
 * edge`: temperature as 1-minute min/max/avg, heating only when it changes): the edge's own
 * telemetry store keeps every raw sample, the cloud gets the reduced telemetry, as from a thin edge.
 * Real hub and leaf nats-servers; the edge node on a manual clock.
 */
describe("thick edge telemetry: raw at the edge, reduced in the cloud", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  const clock = new ManualClock(T0);

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("thick-telemetry", EDGE));
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-tt", hub), {
      twins: [Thermostat, Pump],
      logger: silentLogger(),
    });
    edge = await startEdge();
  }, 180_000);
  const startEdge = () =>
    EdgeNode.start(
      edgeNodeConfig(
        "edge-tt",
        leaf,
        { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms", windowGrace: "5s", twins: ["thermostat"] },
        { store: { kind: "sqlite", path: join(dir, "edge.db") }, shards: 4 },
      ),
      { logger: silentLogger(), twins: [Thermostat, Pump], clock },
    );
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("records an edge twin's raw samples at the edge and forwards its reduced telemetry to the cloud", async () => {
    await linkUp(edge);
    const thick = edge.thick!;
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-devices-tt" });
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "hall-1",
      ackTimeoutMs: 5000,
    });
    const pick = (samples: readonly { at: number; metrics: Record<string, number> }[]) =>
      samples.map((s) => ({ at: s.at, metrics: s.metrics }));
    try {
      await device.report({ temperature: 20 });
      await device.telemetry({ temperature: 20, heating: 0 }, T0 + 5 * SECOND);
      await device.telemetry({ temperature: 22, heating: 0 }, T0 + 20 * SECOND);
      await device.telemetry({ temperature: 24, heating: 1 }, T0 + 40 * SECOND);
      await eventually(
        () => (edge.telemetry.stats.recorded >= 3 ? true : undefined),
        "the edge recorded the raw telemetry",
        30_000,
      );
      // The edge's own telemetry store has every raw sample of its twin.
      expect(pick(await thick.node.twins.telemetry(device.ref, RANGE))).toEqual([
        { at: T0 + 5 * SECOND, metrics: { temperature: 20, heating: 0 } },
        { at: T0 + 20 * SECOND, metrics: { temperature: 22, heating: 0 } },
        { at: T0 + 40 * SECOND, metrics: { temperature: 24, heating: 1 } },
      ]);
      clock.jump(65 * SECOND); // the first minute and its grace are over
      await edge.telemetry.closeDue();
      await eventually(
        async () => ((await cloud.twins.telemetry(device.ref, RANGE)).length === 3 ? true : undefined),
        "the reduced telemetry in the cloud",
        60_000,
      );
      expect(pick(await cloud.twins.telemetry(device.ref, RANGE))).toEqual([
        { at: T0, metrics: { "temperature.min": 20, "temperature.max": 24, "temperature.avg": 22 } },
        { at: T0 + 5 * SECOND, metrics: { heating: 0 } },
        { at: T0 + 40 * SECOND, metrics: { heating: 1 } },
      ]);
      // The node's ingress stream at the edge takes the twins' reports only; the raw stream their telemetry.
      const jsm = await jetstreamManager(wire.connection);
      expect((await jsm.streams.info("DOPPEL_INGRESS")).config.subjects).toEqual([
        "doppel.dev.thermostat.*.reported",
      ]);
      expect((await jsm.streams.info("DOPPEL_EDGE_RAW")).config.subjects?.sort()).toEqual([
        "doppel.dev.pump.*.telemetry",
        "doppel.dev.thermostat.*.telemetry",
      ]);
    } finally {
      await device.close();
      await wire.close();
    }
  }, 300_000);

  it("an edge node whose ingress stream still takes its twins' telemetry (made by an older edge node) hands it to the raw stream", async () => {
    await edge.stop();
    // The streams as an older edge node left them: the node's ingress stream with the thermostats'
    // telemetry, the raw stream with the other types' only.
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-devices-tt2" });
    const jsm = await jetstreamManager(wire.connection);
    const raw = (await jsm.streams.info("DOPPEL_EDGE_RAW")).config;
    await jsm.streams.update("DOPPEL_EDGE_RAW", { ...raw, subjects: ["doppel.dev.pump.*.telemetry"] });
    const ingress = (await jsm.streams.info("DOPPEL_INGRESS")).config;
    await jsm.streams.update("DOPPEL_INGRESS", {
      ...ingress,
      subjects: ["doppel.dev.thermostat.*.reported", "doppel.dev.thermostat.*.telemetry"],
    });
    edge = await startEdge();
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "hall-2",
      ackTimeoutMs: 5000,
    });
    try {
      expect((await jsm.streams.info("DOPPEL_INGRESS")).config.subjects).toEqual([
        "doppel.dev.thermostat.*.reported",
      ]);
      const recorded = edge.telemetry.stats.recorded;
      await device.telemetry({ temperature: 18 }, T0 + 10 * 60 * SECOND);
      await eventually(
        () => (edge.telemetry.stats.recorded > recorded ? true : undefined),
        "the raw telemetry recorded at the edge",
        30_000,
      );
      expect(
        (await edge.thick!.node.twins.telemetry(device.ref, { since: T0, until: T0 + 3_600_000 })).map(
          (s) => s.metrics,
        ),
      ).toEqual([{ temperature: 18 }]);
    } finally {
      await device.close();
      await wire.close();
    }
  }, 300_000);
});
