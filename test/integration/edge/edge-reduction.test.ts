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

const EDGE = "plant-r";
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SECOND = 1000;

/**
 * Edge analytics on the thermostat example (its `static edge`: temperature as 1-minute
 * min/max/avg, heating only when it changes): real hub and leaf nats-servers, a cloud node with
 * the twins, an edge node on a manual clock. The cloud receives exactly the reduced telemetry; the
 * edge keeps every raw sample.
 */
describe("edge reduction: telemetry aggregated at the edge, raw kept there", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  const clock = new ManualClock(T0);

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("reduce", EDGE));
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-r", hub), {
      twins: [Thermostat, Pump],
      logger: silentLogger(),
    });
    edge = await startEdge();
  });
  const startEdge = () =>
    EdgeNode.start(
      edgeNodeConfig("edge-r", leaf, { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms", windowGrace: "5s" }),
      { logger: silentLogger(), twins: [Thermostat, Pump], clock },
    );
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("forwards one minute's min/max/avg and only changes of heating; the raw samples stay at the edge", async () => {
    await linkUp(edge);
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-thermostat" });
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "room-1",
      ackTimeoutMs: 5000,
    });
    const pump = new DeviceClient({ transport: wire, type: "pump", id: "p-raw", ackTimeoutMs: 5000 });
    const cloudSamples = async (ref = device.ref) =>
      (await cloud.twins.telemetry(ref, { since: T0 - 3_600_000, until: T0 + 3_600_000 })).map((s) => ({
        at: s.at,
        metrics: s.metrics,
      }));
    try {
      // The first minute: temperature 20, 22, 24 (min 20, max 24, avg 22); heating 0, 0, 1.
      await device.telemetry({ temperature: 20, heating: 0 }, T0 + 5 * SECOND);
      await device.telemetry({ temperature: 22, heating: 0 }, T0 + 20 * SECOND);
      await device.telemetry({ temperature: 24, heating: 1 }, T0 + 40 * SECOND);
      // The second minute has begun.
      await device.telemetry({ temperature: 30, heating: 1 }, T0 + 65 * SECOND);
      // A pump declares no reduction: its telemetry goes up as it came.
      await pump.telemetry({ rpm: 1500 }, T0 + 7 * SECOND);
      await eventually(
        () => (edge.telemetry.stats.received >= 5 ? true : undefined),
        "the edge took the raw telemetry",
        30_000,
      );
      // The deadband passes of heating and the pump's raw sample arrive before any window closes.
      await eventually(
        async () =>
          (await cloudSamples()).length === 2 && (await cloudSamples(pump.ref)).length === 1
            ? true
            : undefined,
        "heating changes and the pump's raw sample in the cloud",
        60_000,
      );
      expect(await cloudSamples(pump.ref)).toEqual([{ at: T0 + 7 * SECOND, metrics: { rpm: 1500 } }]);

      // Before the first window's end plus its grace, nothing is aggregated.
      clock.jump(64 * SECOND);
      await edge.telemetry.closeDue();
      expect(edge.telemetry.stats.windows).toBe(0);
      clock.jump(1 * SECOND); // T0 + 65 s: the first minute's window (and its 5 s grace) is over.
      await edge.telemetry.closeDue();
      expect(edge.telemetry.stats.windows).toBe(1);
      await eventually(
        async () => ((await cloudSamples()).length === 3 ? true : undefined),
        "the first minute's aggregate in the cloud",
        60_000,
      );
      // A sample for the closed minute is late: kept raw at the edge, not forwarded.
      await device.telemetry({ temperature: 99, heating: 1 }, T0 + 30 * SECOND);
      await eventually(
        () => (edge.telemetry.stats.late >= 1 ? true : undefined),
        "the late sample counted",
        30_000,
      );
      clock.jump(60 * SECOND); // T0 + 125 s: the second minute is over too.
      await edge.telemetry.closeDue();
      await eventually(
        async () => ((await cloudSamples()).length === 4 ? true : undefined),
        "the second minute's aggregate in the cloud",
        60_000,
      );
      expect(await cloudSamples()).toEqual([
        { at: T0, metrics: { "temperature.min": 20, "temperature.max": 24, "temperature.avg": 22 } },
        { at: T0 + 5 * SECOND, metrics: { heating: 0 } },
        { at: T0 + 40 * SECOND, metrics: { heating: 1 } },
        {
          at: T0 + 60 * SECOND,
          metrics: { "temperature.min": 30, "temperature.max": 30, "temperature.avg": 30 },
        },
      ]);

      // The edge keeps every raw sample, the late one included.
      const jsm = await jetstreamManager(wire.connection);
      const info = await jsm.streams.info("DOPPEL_EDGE_RAW");
      const raw: { at: number; metrics: Record<string, number> }[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const message = await jsm.streams.getMessage("DOPPEL_EDGE_RAW", { seq });
        if (message?.subject === "doppel.dev.thermostat.room-1.telemetry") raw.push(message.json());
      }
      expect(raw).toEqual([
        { at: T0 + 5 * SECOND, metrics: { temperature: 20, heating: 0 } },
        { at: T0 + 20 * SECOND, metrics: { temperature: 22, heating: 0 } },
        { at: T0 + 40 * SECOND, metrics: { temperature: 24, heating: 1 } },
        { at: T0 + 65 * SECOND, metrics: { temperature: 30, heating: 1 } },
        { at: T0 + 30 * SECOND, metrics: { temperature: 99, heating: 1 } },
      ]);
      expect(edge.telemetry.stats).toMatchObject({ received: 6, windows: 2, late: 1, invalid: 0 });
    } finally {
      await device.close();
      await pump.close();
      await wire.close();
    }
  }, 300_000);

  it("a restart of the edge node keeps the open window: its aggregate covers the samples from before the restart", async () => {
    await linkUp(edge);
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-thermostat-2" });
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "room-2",
      ackTimeoutMs: 5000,
    });
    const start = T0 + 5 * 60 * SECOND; // a minute after the first test's windows
    clock.jump(start + 1 * SECOND - clock.now());
    const jsm = await jetstreamManager(wire.connection);
    try {
      await device.telemetry({ temperature: 10 }, start + 5 * SECOND);
      await device.telemetry({ temperature: 14 }, start + 10 * SECOND);
      // Both are folded into the open minute and acknowledged (the raw consumer's ack floor is past them).
      const last = (await jsm.streams.info("DOPPEL_EDGE_RAW")).state.last_seq;
      await eventually(
        async () =>
          (await jsm.consumers.info("DOPPEL_EDGE_RAW", "doppel-edge-telemetry")).ack_floor.stream_seq >= last
            ? true
            : undefined,
        "the raw samples acknowledged by the edge node",
        30_000,
      );
      await edge.stop();
      edge = await startEdge();
      expect(edge.telemetry.stats.refolded).toBe(2);
      await device.telemetry({ temperature: 12 }, start + 20 * SECOND);
      await eventually(
        () => (edge.telemetry.stats.received >= 1 ? true : undefined),
        "the new edge node took the sample",
        30_000,
      );
      clock.jump(start + 65 * SECOND - clock.now());
      await edge.telemetry.closeDue();
      const cloudSamples = async () =>
        (await cloud.twins.telemetry(device.ref, { since: T0, until: T0 + 3_600_000 })).map((s) => ({
          at: s.at,
          metrics: s.metrics,
        }));
      await eventually(
        async () => ((await cloudSamples()).length > 0 ? true : undefined),
        "the minute's aggregate in the cloud",
        60_000,
      );
      expect(await cloudSamples()).toEqual([
        { at: start, metrics: { "temperature.min": 10, "temperature.max": 14, "temperature.avg": 12 } },
      ]);
      expect(edge.telemetry.stats).toMatchObject({ received: 1, windows: 1, late: 0, refolded: 2 });
    } finally {
      await device.close();
      await wire.close();
    }
  }, 300_000);
});
