import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { DeviceClient } from "doppel/device";
import { NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import type { EdgeReport } from "../../../runtime/devices/edge/edge-status.ts";
import { DoppelClient, type RemoteEvent } from "../../../runtime/grpc/client.ts";
import type { ThickEdgeReport } from "../../../runtime/replication/thick-edge-status.ts";
import { doppel, startNode, stopNode } from "../../cli/doppel-process.ts";
import { eventually } from "../../support/eventually.ts";
import { metricValue } from "../../support/metrics.ts";
import { type LinkRelay, type NatsProcess, startEdgeServers, stopEdgeServers } from "./edge-servers.ts";

const EDGE = "plant-s";
const boiler: TwinRef = { type: "thermostat", id: "boiler-s" };
const pump: TwinRef = { type: "pump", id: "pump-s" };

async function historyOf(client: DoppelClient, ref: TwinRef, toVersion: number): Promise<RemoteEvent[]> {
  const events: RemoteEvent[] = [];
  for await (const event of client.history(ref, { toVersion })) events.push(event);
  return events;
}

/** What the cloud's copy of an event keeps (its writer is the replicator's, docs/edge.md). */
const same = (e: RemoteEvent) => ({
  seq: e.seq,
  type: e.type,
  data: e.data,
  at: e.at,
  principal: e.principal,
});

/**
 * Waits until the cloud's copy of `ref` is at the edge's version (at least `atLeast`; the edge
 * twin's reminders may keep writing, so both are compared at one version), then checks that the
 * cloud's history is the edge's, seq 1 to that version without a gap. Returns the edge's log.
 */
async function expectCloudCaughtUp(
  edge: DoppelClient,
  cloud: DoppelClient,
  ref: TwinRef,
  atLeast: number,
  what: string,
): Promise<RemoteEvent[]> {
  const head = await eventually(
    async () => {
      const [e, c] = [await edge.getTwin(ref), await cloud.getTwin(ref)];
      return c.version >= atLeast && c.version === e.version ? c.version : undefined;
    },
    `the cloud caught up with ${what}`,
    180_000,
  );
  const edgeLog = await historyOf(edge, ref, head);
  const cloudLog = await historyOf(cloud, ref, head);
  expect(cloudLog.map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
  expect(cloudLog.map(same)).toEqual(edgeLog.map(same));
  return edgeLog;
}

/**
 * A thick edge run by `doppel start --edge ... --edge-twins thermostat` and a cloud node run by
 * `doppel start --nats <hub>`, each its own process, on real hub and leaf nats-servers (a relay
 * between them the test cuts): the thermostat runs at the edge, its log reaches the cloud, a
 * command sent to the cloud is routed down, the pump (not an edge twin) is forwarded to the cloud
 * as on a thin edge; through an outage the edge keeps serving, and afterwards the cloud's history
 * equals the edge's.
 */
describe("doppel start --edge-twins: a thick edge and a cloud node as processes", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloudProcess: { child: ChildProcess; address: string; output: () => string };
  let edgeProcess: { child: ChildProcess; address: string; output: () => string };
  let cloud: DoppelClient;
  let edge: DoppelClient;
  let wire: NatsTransport;
  /** The thick edge process (started again, on the same data folder, by the kill test). */
  const startEdge = () =>
    startNode([
      "--data",
      join(dir, "edge"),
      "--nats",
      leaf.url,
      "--edge",
      EDGE,
      "--upstream",
      relay.url,
      "--edge-twins",
      "thermostat",
      "--metrics",
      "127.0.0.1:0",
    ]);

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("thick-start", EDGE));
    cloudProcess = await startNode([
      "--data",
      join(dir, "cloud"),
      "--no-demo",
      "--nats",
      hub.url,
      "--metrics",
      "127.0.0.1:0",
    ]);
    edgeProcess = await startEdge();
    cloud = new DoppelClient(cloudProcess.address, { timeoutMs: 30_000 });
    edge = new DoppelClient(edgeProcess.address, { timeoutMs: 30_000 });
    wire = await NatsTransport.connect({ servers: leaf.url, name: "devices", reconnectTimeWaitMs: 100 });
  }, 300_000);
  afterAll(async () => {
    cloud?.close();
    edge?.close();
    await wire?.close();
    if (edgeProcess) await stopNode(edgeProcess.child);
    if (cloudProcess) await stopNode(cloudProcess.child);
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("prints what runs where", () => {
    expect(cloudProcess.output()).toContain("edges   thick edges' logs applied to this store");
    const output = edgeProcess.output();
    expect(output).toContain(`(edge ${EDGE}, thick) is running`);
    expect(output).toMatch(/twins {3}thermostat at the edge \(store sqlite /);
    expect(output).toContain("forward pump to the cloud's twins");
    expect(output).toContain(`npx doppel query thermostat --server ${edgeProcess.address}`);
  });

  it("runs the edge twin at the edge, replicates it to the cloud and takes cloud commands down", async () => {
    const device = new DeviceClient({ transport: wire, ...boiler, ackTimeoutMs: 10_000 });
    const pumpDevice = new DeviceClient({ transport: wire, ...pump, ackTimeoutMs: 10_000 });
    // WatchTwin in the cloud, open before the twin exists anywhere: it sees the replicated events.
    const watched: number[] = [];
    let watching = true;
    const ready = new Promise<void>((resolve) => {
      void (async () => {
        for await (const change of cloud.watch(boiler, { onReady: resolve })) {
          watched.push(...change.events.map((e) => e.seq));
          if (!watching) break;
        }
      })().catch(() => undefined);
    });
    await ready;
    try {
      await device.report({ temperature: 19.5, heating: false, firmware: "1.0" });
      const atEdge = await eventually(
        async () => {
          const view = await edge.getTwin(boiler);
          return (view.reported as { temperature?: number }).temperature === 19.5 ? view : undefined;
        },
        "the edge's twin has the report",
        60_000,
      );
      const local = await edge.invoke(boiler, "setTarget", { celsius: 22 });
      expect(local.version).toBeGreaterThan(atEdge.version);
      // The cloud sees the edge's log once the edge registered it as a source (link up).
      await eventually(
        async () => ((await cloud.getTwin(boiler).catch(() => undefined))?.version ?? 0) >= local.version,
        "the cloud has the edge twin's events",
        120_000,
      );
      const history = await historyOf(cloud, boiler, local.version);
      expect(history.map((e) => e.seq)).toEqual(Array.from({ length: local.version }, (_, i) => i + 1));
      // A command sent to the cloud runs at the edge (routed down) and comes back replicated.
      const routed = await cloud.invoke(boiler, "setTarget", { celsius: 24 });
      expect((await edge.getTwin(boiler)).version).toBeGreaterThanOrEqual(routed.version);
      expect((await edge.getTwin(boiler)).desired).toBeDefined();
      await eventually(
        async () => ((await cloud.getTwin(boiler)).version >= routed.version ? true : undefined),
        "the routed command replicated back",
        60_000,
      );
      // The cloud's watcher saw every replicated event once, in order.
      await eventually(
        () => watched.length >= routed.version,
        () => `the cloud's watcher saw ${routed.version} events (saw ${watched.join(",")})`,
        60_000,
      );
      expect(watched.slice(0, routed.version)).toEqual(
        Array.from({ length: routed.version }, (_, i) => i + 1),
      );
      watching = false;
      // The pump is not an edge twin: its report is stored and forwarded to the cloud's twin.
      await pumpDevice.report({ rpm: 1200 });
      await eventually(
        async () =>
          ((await cloud.getTwin(pump).catch(() => undefined))?.reported as { rpm?: number } | undefined)
            ?.rpm === 1200,
        "the cloud's pump twin has the forwarded report",
        120_000,
      );
      await expect(edge.getTwin(pump)).rejects.toMatchObject({ code: "NOT_FOUND" });
      // Its sync crosses the link to the cloud, which runs its twin (the edge's node leaves it alone).
      expect((await pumpDevice.sync()).reported).toMatchObject({ rpm: 1200 });
    } finally {
      await device.close();
      await pumpDevice.close();
    }
  }, 400_000);

  it("keeps serving local commands through a link outage; afterwards the cloud's history equals the edge's", async () => {
    const device = new DeviceClient({ transport: wire, ...boiler, ackTimeoutMs: 10_000 });
    try {
      await relay.cut();
      // The cloud notices: a command routed down fails fast, naming the edge.
      await eventually(
        async () => {
          const refused = await cloud.invoke(boiler, "setTarget", { celsius: 5 }).catch((e: unknown) => e);
          return (refused as { code?: string }).code === "UNAVAILABLE" ? refused : undefined;
        },
        "a command in the cloud fails with the link cut",
        60_000,
      );
      for (let i = 0; i < 5; i++) {
        await edge.invoke(boiler, "setTarget", { celsius: 10 + i });
        await device.report({ temperature: 20 + i / 10 });
      }
      const during = await edge.invoke(boiler, "setMode", { mode: "off" });
      // The edge twin's device syncs with the edge's node, link or no link.
      expect((await device.sync()).version).toBeGreaterThanOrEqual(during.version);
      expect((await cloud.getTwin(boiler)).version).toBeLessThan(during.version);

      await relay.restore();
      const edgeLog = await expectCloudCaughtUp(edge, cloud, boiler, during.version, "the edge");
      expect(edgeLog.map((e) => e.type)).toContain("modeChanged");
      // With the link back, commands sent to the cloud go down again.
      await eventually(
        async () =>
          (await cloud.invoke(boiler, "setMode", { mode: "auto" }).catch(() => undefined)) ?? undefined,
        "a command in the cloud works again",
        90_000,
      );
    } finally {
      await device.close();
    }
  }, 600_000);

  it("`doppel edge status` and both nodes' /metrics show the thick edge's replication", async () => {
    const scrape = async (node: { output: () => string }) => {
      const url = /metrics (http:\/\/\S+\/metrics)/.exec(node.output())?.[1];
      if (!url) throw new Error(`no metrics address in: ${node.output()}`);
      return (await fetch(url)).text();
    };
    await edge.invoke(boiler, "setTarget", { celsius: 23 });
    // The edge is both: its thermostats' log (thick) and its pumps' reports (thin).
    const [thin, thick] = await eventually(
      async () => {
        const run = await doppel(["edge", "status", "--nats", hub.url, "--json"]);
        const reports = run.stdout
          .split("\n")
          .filter((line) => line.trim() !== "")
          .map((line) => JSON.parse(line) as EdgeReport | ThickEdgeReport);
        const thinEdge = reports.find((r): r is EdgeReport => r.kind === "thin" && r.edge === EDGE);
        const thickEdge = reports.find((r): r is ThickEdgeReport => r.kind === "thick" && r.edge === EDGE);
        const caughtUp =
          (await cloud.getTwin(boiler)).version === (await edge.getTwin(boiler)).version &&
          thickEdge?.linkUp &&
          thickEdge.backlog === 0;
        return caughtUp && thinEdge ? ([thinEdge, thickEdge] as const) : undefined;
      },
      "edge status: the thick edge caught up",
      120_000,
    );
    expect(thin.linkUp).toBe(true);
    expect(thick.replicators).toBe(1);
    expect(thick.counts?.applied).toBeGreaterThan(0);
    expect(thick.counts).toMatchObject({ conflict: 0, malformed: 0 });
    expect(thick.lastSyncAt).toBeGreaterThan(0);

    // The cloud node's own replicator and the edge node's log publisher on /metrics.
    const cloudMetrics = await scrape(cloudProcess);
    expect(
      metricValue(cloudMetrics, "doppel_edge_replication_batches_total", `edge="${EDGE}",outcome="applied"`),
    ).toBeGreaterThanOrEqual(thick.counts?.applied ?? Number.POSITIVE_INFINITY);
    // Gauges are read at scrape time: the link's (a JetStream request to the cloud every tick, which
    // a loaded machine may time out) and the log's pending (the thermostat's reminders write too)
    // are waited for, not caught at one moment.
    const edgeMetrics = await eventually(
      async () => {
        const text = await scrape(edgeProcess);
        return /doppel_edge_log_pending\{[^}]*\} 0\b/.test(text) &&
          /doppel_edge_link_up\{[^}]*\} 1\b/.test(text)
          ? text
          : undefined;
      },
      "the edge's /metrics: link up, nothing pending",
      60_000,
    );
    expect(metricValue(edgeMetrics, "doppel_edge_log_published_total", "otel_scope_name")).toBeGreaterThan(0);
  }, 300_000);

  it("a thick edge killed (SIGKILL) and started again publishes what it had committed: the cloud's history equals the edge's", async () => {
    for (let i = 0; i < 8; i++) await edge.invoke(boiler, "setTarget", { celsius: 6 + i });
    const last = await edge.invoke(boiler, "setMode", { mode: "off" });
    // Killed at once: the last commits may be durable at the edge but not yet in its log stream.
    const exited = new Promise((resolve) => edgeProcess.child.once("exit", resolve));
    edgeProcess.child.kill("SIGKILL");
    await exited;
    edge.close();
    edgeProcess = await startEdge();
    edge = new DoppelClient(edgeProcess.address, { timeoutMs: 30_000 });
    expect((await edge.getTwin(boiler)).version).toBeGreaterThanOrEqual(last.version);
    await expectCloudCaughtUp(edge, cloud, boiler, last.version, "the restarted edge");
    // And the restarted edge takes commands from the cloud again.
    await eventually(
      async () =>
        (await cloud.invoke(boiler, "setMode", { mode: "auto" }).catch(() => undefined)) ?? undefined,
      "a command in the cloud reaches the restarted edge",
      90_000,
    );
  }, 400_000);
});
