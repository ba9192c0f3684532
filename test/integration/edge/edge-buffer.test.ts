import { DeviceClient } from "doppel/device";
import { DoppelNode, EdgeNode, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { reportedValue, reportOf } from "../chaos/exactly-once.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  edgeNodeConfig,
  HUB_DOMAIN,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-b";
/** A small outage buffer: a few dozen reports fill it. */
const MAX_BYTES = 8 * 1024;

/**
 * A full outage buffer, both ways docs/edge.md says it goes: with `discard: new` the device's
 * report is refused with RESOURCE_EXHAUSTED and nothing acknowledged is lost; with `discard: old`
 * every report is acknowledged and the oldest unforwarded ones are dropped, exactly as many as
 * `doppel_edge_dropped_total` counts. Real hub and leaf servers, the link cut by a relay.
 */
describe("thin edge: a full outage buffer", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let wire: NatsTransport;

  const startEdge = (discard: "new" | "old", rawMaxBytes?: number) =>
    EdgeNode.start(
      edgeNodeConfig(
        `edge-${discard}`,
        leaf,
        {
          name: EDGE,
          hubDomain: HUB_DOMAIN,
          tick: "200ms",
          buffer: { maxBytes: MAX_BYTES, discard },
          ...(rawMaxBytes ? { raw: { maxBytes: rawMaxBytes } } : {}),
        },
        { metrics: { listen: "127.0.0.1:0" } },
      ),
      { logger: silentLogger() },
    );

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("buffer", EDGE));
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-b", hub), {
      twins: [Thermostat, Pump],
      logger: silentLogger(),
    });
    wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-buffer-devices" });
  });
  afterAll(async () => {
    await wire?.close();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  /** The values of the reports the cloud twin applied, in order. */
  const applied = async (device: DeviceClient) =>
    (await cloud.twins.history(device.ref, { limit: 10_000 }))
      .filter((e) => e.type === "$reported")
      .map((e) => reportedValue((e.data["patch"] as { temperature?: unknown }).temperature));

  it("discard new: a report beyond the full buffer is refused with RESOURCE_EXHAUSTED; every acknowledged one reaches the cloud", async () => {
    const edge = await startEdge("new");
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "full-new",
      ackTimeoutMs: 5000,
    });
    try {
      await linkUp(edge);
      await cutLink(relay, edge);
      const acked: number[] = [];
      let refusal: { code?: string; message?: string } | undefined;
      for (let value = 1; value <= 1000 && !refusal; value++) {
        try {
          await device.report(reportOf(value));
          acked.push(value);
        } catch (error) {
          refusal = error as { code?: string; message?: string };
        }
      }
      expect(refusal?.code).toBe("RESOURCE_EXHAUSTED");
      expect(refusal?.message).toMatch(/maximum bytes exceeded/);
      expect(acked.length).toBeGreaterThan(5);
      await eventually(
        () => (edge.status.backlog === acked.length ? true : undefined),
        "the backlog counted",
        30_000,
      );
      expect(edge.status.backlogBytes).toBeLessThanOrEqual(MAX_BYTES);

      await relay.restore();
      await eventually(
        async () => ((await applied(device)).length === acked.length ? true : undefined),
        "every acknowledged report in the cloud",
        120_000,
      );
      expect(await applied(device)).toEqual(acked);
      expect(edge.status.dropped).toBe(0);
      // The buffer drained: the device is accepted again.
      await eventually(() => (edge.status.backlog === 0 ? true : undefined), "the backlog trimmed", 30_000);
      await device.report(reportOf(acked.length + 10));
    } finally {
      await device.close();
      await edge.stop();
    }
  }, 300_000);

  it("discard old: every report is acknowledged, the oldest unforwarded are dropped, and doppel_edge_dropped_total counts exactly those", async () => {
    const edge = await startEdge("old");
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "full-old",
      ackTimeoutMs: 5000,
    });
    try {
      await linkUp(edge);
      await cutLink(relay, edge);
      const acked: number[] = [];
      for (let value = 1; value <= 200; value++) {
        await device.report(reportOf(value));
        acked.push(value);
      }
      await eventually(() => (edge.status.dropped > 0 ? true : undefined), "drops counted", 30_000);
      expect(edge.status.backlogBytes).toBeLessThanOrEqual(MAX_BYTES);

      await relay.restore();
      await eventually(
        async () => ((await applied(device)).at(-1) === 200 ? true : undefined),
        "the last report in the cloud",
        120_000,
      );
      await eventually(() => (edge.status.backlog === 0 ? true : undefined), "the backlog drained", 30_000);
      const inCloud = await applied(device);
      const missing = acked.filter((value) => !inCloud.includes(value));
      // What is missing is a prefix (the oldest), and exactly what the edge counted as dropped.
      expect(missing).toEqual(acked.slice(0, missing.length));
      expect(missing.length).toBe(edge.status.dropped);
      expect(inCloud).toEqual(acked.slice(missing.length));
      const scraped = await (await fetch(`http://${edge.metricsAddress}/metrics`)).text();
      expect(scraped).toMatch(new RegExp(`doppel_edge_dropped_total\\{[^}]*\\} ${missing.length}\\b`));
    } finally {
      await device.close();
      await edge.stop();
    }
  }, 300_000);

  it("telemetry with the edge stream full: the raw stream drops its oldest; every message reaches the cloud or is counted as dropped", async () => {
    // The edge stream refuses when full, so unforwarded telemetry waits in the raw stream, which
    // keeps only its newest 4 KiB: during the outage the oldest unforwarded messages are removed.
    const edge = await startEdge("new", 4 * 1024);
    const pump = new DeviceClient({ transport: wire, type: "pump", id: "raw-full", ackTimeoutMs: 5000 });
    const SENT = 300;
    const T0 = Date.UTC(2026, 0, 1);
    const inCloud = async () =>
      new Set(
        (await cloud.twins.telemetry(pump.ref, { since: T0, until: T0 + SENT + 1, limit: 10_000 })).map(
          (s) => s.metrics["rpm"],
        ),
      );
    try {
      await linkUp(edge);
      await cutLink(relay, edge);
      // Every message is acknowledged by the raw stream (it discards its oldest, never refuses).
      for (let rpm = 1; rpm <= SENT; rpm++) await pump.telemetry({ rpm }, T0 + rpm);
      await eventually(
        () => (edge.telemetry.stats.dropped > 0 ? true : undefined),
        "raw telemetry dropped during the outage",
        60_000,
      );
      await relay.restore();
      // Once the backlog is forwarded, every message is either in the cloud or counted as dropped.
      await eventually(
        async () => ((await inCloud()).size + edge.telemetry.stats.dropped === SENT ? true : undefined),
        "every message in the cloud or counted as dropped",
        120_000,
      );
      const stats = { ...edge.telemetry.stats };
      expect(stats.dropped).toBeGreaterThan(0);
      expect((await inCloud()).has(SENT)).toBe(true);
      const scraped = await (await fetch(`http://${edge.metricsAddress}/metrics`)).text();
      expect(scraped).toMatch(
        new RegExp(`doppel_edge_telemetry_total\\{[^}]*outcome="dropped"[^}]*\\} ${stats.dropped}\\b`),
      );
    } finally {
      await pump.close();
      await edge.stop();
    }
  }, 300_000);
});
