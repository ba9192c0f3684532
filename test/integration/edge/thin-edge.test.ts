import { DeviceClient } from "doppel/device";
import { DoppelNode, EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeStatusSubject } from "../../../runtime/devices/edge/edge-forwarder.ts";
import { edgeReports } from "../../../runtime/devices/edge/edge-status.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { account, type DeviceRun, readLogs, reportedValue, reportUntil } from "../chaos/exactly-once.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  edgeNodeConfig,
  HUB_DOMAIN,
  hubConnection,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  restoreLink,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const DEVICES = 10;
const EDGE = "plant-a";

/**
 * A thin edge: a hub and a leaf nats-server (the leaf link through a relay the test cuts), a cloud
 * node on the hub running the twins, an edge node on the leaf. Devices at the edge report; the
 * link is cut while they keep reporting and getting acks; the link returns; every acknowledged
 * report reaches its cloud twin exactly once and in order. Run against an open hub and against one
 * locked per edge (hub-config.ts: the edge's leaf user has only the permissions an edge needs).
 */
describe.each([
  { hub: "open hub", lockHub: undefined },
  { hub: "hub with per-edge users", lockHub: {} },
])("thin edge: store-and-forward over a leaf link ($hub)", ({ lockHub }) => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  const store = new MemoryEventStore();

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("thin", EDGE, { lockHub }));
    cloud = await DoppelNode.start(
      cloudNodeConfig("cloud", hub, {
        consumer: { ackWait: "5s", maxAckPending: 256, maxInFlightPerTwin: 8 },
      }),
      { twins: [Thermostat, Pump], store, logger: silentLogger() },
    );
    edge = await EdgeNode.start(
      edgeNodeConfig("edge", leaf, { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms" }),
      { logger: silentLogger() },
    );
  });
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("acknowledges at the edge through an outage; the cloud applies every acked report once, in order", async () => {
    await linkUp(edge);
    const wire = await NatsTransport.connect({
      servers: leaf.url,
      name: "edge-devices",
      reconnectTimeWaitMs: 100,
    });
    const devices = Array.from(
      { length: DEVICES },
      (_, i) =>
        new DeviceClient({ transport: wire, type: "thermostat", id: `edge-t${i}`, ackTimeoutMs: 5000 }),
    );
    const runs: DeviceRun[] = devices.map((d) => ({ ref: d.ref, acked: [], resent: 0 }));
    let running = true;
    const load = devices.map((d, i) => reportUntil(d, runs[i]!, () => running));
    const acked = () => runs.reduce((n, r) => n + r.acked.length, 0);
    try {
      // Before the outage the cloud twin follows its edge device.
      await eventually(
        async () => {
          const view = await cloud.twins.get(runs[0]!.ref).catch(() => undefined);
          return typeof view?.reported["temperature"] === "number" ? true : undefined;
        },
        "a cloud twin fed from the edge",
        60_000,
      );
      await cutLink(relay, edge);
      const cutAt = acked();
      // Devices keep getting acks from the edge while the cloud is unreachable.
      await eventually(() => (acked() >= cutAt + 150 ? true : undefined), "acks during the outage", 90_000);
      await eventually(
        () => (edge.status.backlog >= 100 ? true : undefined),
        "a backlog at the edge",
        30_000,
      );
      const backlogDuringOutage = edge.status.backlog;
      await restoreLink(relay, edge);
      running = false;
      await Promise.all(load);
      const finals = new Map<string, unknown>();
      await eventually(
        async () => {
          for (const run of runs) {
            const view = await cloud.twins.get(run.ref).catch(() => undefined);
            finals.set(`${run.ref.type}/${run.ref.id}`, reportedValue(view?.reported["temperature"]));
          }
          return runs.every((r) => finals.get(`${r.ref.type}/${r.ref.id}`) === r.acked.at(-1))
            ? true
            : undefined;
        },
        "every cloud twin at its device's last acknowledged report",
        120_000,
      );
      await eventually(() => (edge.status.backlog === 0 ? true : undefined), "the backlog drained", 30_000);
      const { logs, quarantined } = await readLogs(
        runs,
        (ref) => cloud.twins.history(ref, { limit: 10_000 }),
        async (ref) => (await store.loadTwin(ref)).quarantine !== undefined,
      );
      const result = account(runs, logs, finals);
      console.log(
        JSON.stringify({ scenario: "thin-edge outage", ...result, backlogDuringOutage, edge: edge.status }),
      );
      expect(result.acknowledged).toBeGreaterThanOrEqual(cutAt + 150);
      expect({ ...result, quarantined }).toEqual({
        acknowledged: result.acknowledged,
        lost: 0,
        superseded: 0,
        duplicated: 0,
        outOfOrder: 0,
        wrongFinal: 0,
        quarantined: 0,
      });
      expect(edge.status.dropped).toBe(0);
    } finally {
      running = false;
      await Promise.allSettled(load);
      for (const d of devices) await d.close();
      await wire.close();
    }
  }, 400_000);

  it("brings desired state and commands down to edge devices; a command during an outage fails fast with UNAVAILABLE, or waits with queueFor and reaches the device after it; desired set during the outage arrives after it; edge status shows the link", async () => {
    await linkUp(edge);
    const wire = await NatsTransport.connect({
      servers: leaf.url,
      name: "edge-pump",
      reconnectTimeWaitMs: 100,
    });
    const pump = new DeviceClient({ transport: wire, type: "pump", id: "edge-p1", ackTimeoutMs: 5000 });
    const desired: unknown[] = [];
    pump.onDesired((push) => desired.push(push.desired));
    const commands: { command: string; id: string }[] = [];
    pump.onCommand((command, args, { id }) => {
      commands.push({ command, id });
      return { command, blinking: true, ...args };
    });
    const cloudWire = await NatsTransport.connect({ ...hubConnection(hub), name: "edge-status" });
    const statusOf = async () =>
      (
        await edgeReports(cloudWire.connection, {
          ingressStream: "DOPPEL_INGRESS",
          timeoutMs: 1000,
          now: Date.now,
        })
      ).find((r) => r.edge === EDGE);
    try {
      await pump.report({ rpm: 1200 });
      // The command's request crosses the leaf link to the device at the edge, its answer comes back.
      const answered = await eventually(
        () => cloud.twins.invoke(pump.ref, "identify", { seconds: 2 }).then((r) => r.result),
        "a command answered by the edge device",
        30_000,
      );
      expect(answered).toEqual({ command: "identify", blinking: true, seconds: 2 });
      await cloud.twins.updateDesired(pump.ref, { rpm: 900 });
      await eventually(
        () => (desired.some((d) => (d as { rpm?: number }).rpm === 900) ? true : undefined),
        "the desired push at the edge device",
        30_000,
      );
      const up = await statusOf();
      expect(up).toMatchObject({ edge: EDGE, linkUp: true });

      await cutLink(relay, edge);
      // The device is still connected to its edge server, but the cloud cannot reach it.
      const failure = await eventually(
        () =>
          cloud.twins.invoke(pump.ref, "identify", { seconds: 2 }).then(
            () => undefined,
            (error: unknown) => error as { code?: string },
          ),
        "a command refused during the outage",
        30_000,
      );
      expect(failure.code).toBe("UNAVAILABLE");
      // A command sent with queueFor does not fail: it waits in the cloud twin for the device.
      const queued = await cloud.twins.invoke(pump.ref, "calibrate", { offsetBar: 0.4 });
      expect(queued.result).toMatchObject({ status: "queued" });
      const queuedId = (queued.result as { id: string }).id;
      const down = await statusOf();
      expect(down).toMatchObject({ edge: EDGE, linkUp: false });
      // Reports keep being acknowledged at the edge.
      await pump.report({ rpm: 1300 });
      expect(edge.status.linkUp).toBe(false);
      // A desired change in the cloud during the outage cannot be pushed now...
      await cloud.twins.updateDesired(pump.ref, { rpm: 700 });
      const repushedBefore = edge.desired.repushed;

      await restoreLink(relay, edge);
      await eventually(
        async () => ((await cloud.twins.get(pump.ref)).reported["rpm"] === 1300 ? true : undefined),
        "the report from the outage in the cloud",
        60_000,
      );
      // ...and reaches the device once the link is back, pushed by the edge node.
      await eventually(
        () => (desired.some((d) => (d as { rpm?: number }).rpm === 700) ? true : undefined),
        "the desired change from the outage at the edge device",
        60_000,
      );
      expect(edge.desired.repushed).toBeGreaterThan(repushedBefore);
      // The report buffered at the edge reached the twin: the queued command went down to the device.
      await eventually(
        async () => {
          const calibration = (await cloud.twins.get(pump.ref)).state["calibration"] as { status?: string };
          return calibration?.status === "applied" ? true : undefined;
        },
        "the command queued during the outage, answered by the edge device",
        90_000,
      );
      const calibrations = commands.filter((c) => c.command === "calibrate");
      expect(calibrations.length).toBeGreaterThanOrEqual(1);
      expect(calibrations.every((c) => c.id === queuedId)).toBe(true);
    } finally {
      await pump.close();
      await wire.close();
      await cloudWire.close();
    }
  }, 300_000);

  it("sees a silent partition (the link stalls, its TCP connection stays open) as down after a few timed-out ticks; reports are acked at the edge meanwhile and reach the cloud after it", async () => {
    await linkUp(edge);
    const wire = await NatsTransport.connect({
      servers: leaf.url,
      name: "edge-stall",
      reconnectTimeWaitMs: 100,
    });
    const device = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "edge-stall-1",
      ackTimeoutMs: 5000,
    });
    try {
      await device.report({ temperature: 10 });
      relay.stall();
      // No close reaches either server: the edge node's requests to the cloud time out, tick after
      // tick, until it counts the link as down.
      await eventually(() => (edge.status.linkUp ? undefined : true), "the stalled link seen down", 60_000);
      for (const temperature of [11, 12, 13]) await device.report({ temperature });
      relay.unstall();
      await linkUp(edge, "the link moving again", 90_000);
      await eventually(
        async () => ((await cloud.twins.get(device.ref)).reported["temperature"] === 13 ? true : undefined),
        "the reports acked during the stall in the cloud",
        90_000,
      );
      // Each once, in order.
      const applied = (await cloud.twins.history(device.ref, { limit: 100 }))
        .filter((e) => e.type === "$reported")
        .map((e) => (e.data["patch"] as { temperature?: unknown }).temperature);
      expect(applied).toEqual([10, 11, 12, 13]);
    } finally {
      relay.unstall();
      await device.close();
      await wire.close();
    }
  }, 300_000);

  it("answers a status request after one published without a reply subject (nothing to answer: the edge node keeps serving)", async () => {
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-status-plain" });
    try {
      const subject = edgeStatusSubject(EDGE);
      wire.connection.publish(subject, new Uint8Array());
      const reply = await wire.connection.request(subject, new Uint8Array(), { timeout: 5000 });
      expect(reply.json()).toMatchObject({ edge: EDGE });
    } finally {
      await wire.close();
    }
  });
});
