import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { DoppelNode, MemoryEventStore, NatsTransport, SqliteEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import { refKey, type TwinRef } from "../../../runtime/core/ids.ts";
import type { EventRecord, TwinChange } from "../../../runtime/core/records.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { CloudReplication } from "../../../runtime/replication/cloud-replication.ts";
import { EdgeLogPublisher } from "../../../runtime/replication/edge-log.ts";
import {
  edgeLogStatusSubject,
  REPLICATION_STATUS_SUBJECT,
} from "../../../runtime/replication/replication-status.ts";
import type { ThickEdgeReport } from "../../../runtime/replication/thick-edge-status.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { doppel } from "../../cli/doppel-process.ts";
import { metricValue } from "../../support/metrics.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  type LinkRelay,
  type NatsProcess,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-t";
const ref: TwinRef = { type: "thermostat", id: "boiler-1" };
/** What the cloud's copy of an event must keep (its writer is the replicator's, see docs/edge.md). */
const same = (e: EventRecord) => ({
  seq: e.seq,
  type: e.type,
  data: e.data,
  at: e.at,
  commitId: e.commitId,
  causation: e.causation,
  principal: e.principal,
});
const stateOf = (v: {
  version: number;
  state: unknown;
  reported: unknown;
  desired: unknown;
  delta: unknown;
}) => ({
  version: v.version,
  state: v.state,
  reported: v.reported,
  desired: v.desired,
  delta: v.delta,
});

/**
 * A thick edge: a thermostat twin runs at the edge (SQLite store, the edge's NATS); its committed
 * events replicate to the cloud's store through the edge's log stream, sourced by the cloud across
 * the leaf link (a relay the test cuts). The cloud serves reads and refuses writes.
 */
describe("thick edge: twins at the edge, their log replicated to the cloud", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: DoppelNode;
  let cloudWire: NatsTransport;
  let edgeWire: NatsTransport;
  let replication: CloudReplication;
  let publisher: EdgeLogPublisher;
  const cloudStore = new MemoryEventStore();
  let edgeStore: SqliteEventStore;
  /** The cloud's replicator (a cloud node's part; the second test stops and restarts it). */
  const startReplication = async () => {
    const started = new CloudReplication(cloudWire.connection, cloudStore, {
      shardOf: (r) => shardOf(r.type, r.id, 4),
      onApplied: (change) => cloud.engine.feed.publish(refKey(change.ref), change),
      logger: silentLogger(),
      retryMs: 200,
      node: "cloud",
    });
    await started.start();
    cloud.reportReplication({ cloud: started });
    return started;
  };

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("thick", EDGE));
    // The test runs the cloud's replicator by hand (it stops and restarts it): not the node's own.
    cloud = await DoppelNode.start(
      { ...cloudNodeConfig("cloud", hub, { replicateEdges: false }), metrics: { listen: "127.0.0.1:0" } },
      {
        twins: [Thermostat],
        store: cloudStore,
        logger: silentLogger(),
      },
    );
    cloudWire = await NatsTransport.connect({ servers: hub.url, name: "cloud-replication" });
    replication = await startReplication();
    edgeStore = new SqliteEventStore({ path: join(dir, "edge.db") });
    edge = await DoppelNode.start(
      {
        nodeId: "edge",
        store: { kind: "sqlite", path: join(dir, "edge.db") },
        grpc: { listen: false },
        shards: 4,
        log: { level: "silent" },
        // An edge's node (wired by hand here): it neither applies edges' logs nor registers their
        // sources (on the edge's own server it would answer the edge's registrations).
        nats: { servers: leaf.url, replicateEdges: false },
        edge: { name: EDGE },
        metrics: { listen: "127.0.0.1:0" },
      },
      { twins: [Thermostat], store: edgeStore, logger: silentLogger() },
    );
    edgeWire = await NatsTransport.connect({ servers: leaf.url, name: "edge-log", reconnectTimeWaitMs: 100 });
    publisher = new EdgeLogPublisher(edgeWire.connection, edgeStore, {
      edge: EDGE,
      types: ["thermostat"],
      tickMs: 200,
      maxAgeMs: 7 * 24 * 3_600_000,
      maxBytes: 64 * 1024 ** 2,
      logger: silentLogger(),
    });
    await publisher.start((listener) => edge.engine.feed.subscribe("*", listener));
    edge.reportReplication({ edgeLog: publisher });
  }, 120_000);
  afterAll(async () => {
    await publisher?.stop();
    await replication?.stop();
    await edgeWire?.close();
    await cloudWire?.close();
    await edge?.stop();
    await edgeStore?.close().catch(() => undefined);
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("serves local commands through an outage; afterwards the cloud's history and twin equal the edge's", async () => {
    const device = new DeviceClient({ transport: edgeWire, type: ref.type, id: ref.id, ackTimeoutMs: 5000 });
    const watched: TwinChange[] = [];
    const unwatch = cloud.twins.watch(ref, (change) => watched.push(change));
    const cloudVersion = async () => (await cloudStore.readView(ref))?.version ?? 0;
    try {
      await eventually(() => (publisher.registered ? true : undefined), "the edge log registered", 60_000);
      await device.report({ temperature: 19.5, heating: false, firmware: "1.0" });
      await edge.twins.invoke(ref, "setTarget", { celsius: 21 });
      const before = (await edge.twins.get(ref)).version;
      await eventually(
        async () => ((await cloudVersion()) >= before ? true : undefined),
        "the cloud caught up",
        60_000,
      );
      expect(watched.length).toBeGreaterThan(0);

      await relay.cut();
      // The edge twin keeps serving commands and device reports while the cloud is unreachable.
      for (let i = 0; i < 10; i++) {
        await edge.twins.invoke(ref, "setTarget", { celsius: 10 + i });
        await device.report({ temperature: 20 + i / 10 });
      }
      await edge.twins.invoke(ref, "setMode", { mode: "off" });
      const during = (await edge.twins.get(ref)).version;
      expect(during).toBeGreaterThanOrEqual(before + 11);
      expect(await cloudVersion()).toBeLessThan(during);

      await relay.restore();
      // The edge twin's own reminders keep writing: compare at a moment both are at one version.
      const [edgeView, cloudView] = await eventually(
        async () => {
          const e = await edge.twins.get(ref);
          const c = await cloud.twins.get(ref).catch(() => undefined);
          return c && c.version >= during && c.version === e.version ? ([e, c] as const) : undefined;
        },
        "the cloud caught up with the edge",
        120_000,
      );
      const head = cloudView.version;
      expect(stateOf(cloudView)).toEqual(stateOf(edgeView));
      const edgeLog = await edgeStore.readHistory(ref, { toVersion: head, limit: 10_000 });
      const cloudLog = await cloud.twins.history(ref, { toVersion: head, limit: 10_000 });
      // Same seqs (no gap, no duplicate), same events.
      expect(cloudLog.map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
      expect(cloudLog.map(same)).toEqual(edgeLog.map(same));
      // WatchTwin in the cloud saw every replicated event once, in order.
      await eventually(
        () => (watched.flatMap((c) => c.events).length >= head ? true : undefined),
        "the cloud watcher saw every event",
        30_000,
      );
      const seen = watched.flatMap((c) => c.events.map((e) => e.seq)).slice(0, head);
      expect(seen).toEqual(cloudLog.map((e) => e.seq));
      expect(replication.counts).toMatchObject({ conflict: 0, malformed: 0, gap: 0 });
      // Read-only in the cloud: its engine refuses to write the twin (edge-owned) and the node
      // routes the command down to the edge (route-down.test.ts), whose node does not serve routed
      // commands in this test: UNAVAILABLE, naming the edge.
      const refused = await cloud.twins.invoke(ref, "setTarget", { celsius: 22 }).catch((e: unknown) => e);
      expect(refused).toMatchObject({
        code: "UNAVAILABLE",
        details: { reason: "edge-unreachable", edge: EDGE },
      });
      const copies = await cloudStore.readEvents(ref, 0);
      expect(copies.every((e) => e.writer.node.startsWith(`edge:${EDGE}/`))).toBe(true);
    } finally {
      unwatch();
      await device.close();
    }
  }, 400_000);

  it("`doppel edge status` shows the thick edge: link, backlog, last sync and the replicator's counts, through an outage", async () => {
    /** The real CLI, as its own process, against the cloud's NATS. */
    const status = async (): Promise<ThickEdgeReport | undefined> => {
      const run = await doppel(["edge", "status", "--nats", hub.url, "--json"]);
      if (run.code !== 0) throw new Error(`doppel edge status exited with ${run.code}: ${run.stderr}`);
      return run.stdout
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as ThickEdgeReport)
        .find((r) => r.kind === "thick" && r.edge === EDGE);
    };
    const sameVersions = async () =>
      (await cloudStore.readView(ref))?.version === (await edgeStore.readView(ref))?.version;
    await eventually(() => (publisher.registered ? true : undefined), "the edge log registered", 60_000);
    await edge.twins.invoke(ref, "setTarget", { celsius: 20 });
    const caughtUp = await eventually(
      async () => {
        const r = await status();
        return r?.linkUp && r.backlog === 0 && (r.counts?.applied ?? 0) > 0 && (await sameVersions())
          ? r
          : undefined;
      },
      "edge status: link up, backlog 0, batches applied",
      120_000,
    );
    expect(caughtUp).toMatchObject({ replicators: 1, notSourced: 0, unapplied: 0 });
    expect(caughtUp.counts).toMatchObject({ conflict: 0, malformed: 0 });
    expect(caughtUp.lastSyncAt).toBeGreaterThan(0);
    expect(caughtUp.log).toMatchObject({ edge: EDGE, registered: true, pending: 0 });
    // A malformed batch in the edge's log: the cloud refuses it and counts it against the edge.
    await jetstream(edgeWire.connection).publish(
      `doppel.edge-log.${EDGE}.thermostat.bad-1`,
      new TextEncoder().encode("not a batch"),
    );
    const refused = await eventually(
      async () => {
        const r = await status();
        return r && (r.counts?.malformed ?? 0) > 0 && r.backlog === 0 ? r : undefined;
      },
      "edge status: the malformed batch counted",
      60_000,
    );
    expect(refused.counts).toMatchObject({ malformed: 1, applied: caughtUp.counts?.applied });
    const table = await doppel(["edge", "status", "--nats", hub.url]);
    expect(table.stdout).toMatch(
      new RegExp(
        `THICK EDGE[^\n]*MALFORMED  FORGED\n${EDGE}\\s+up\\s+0\\s+\\d+ s ago\\s+\\d+\\s+0\\s+0\\s+0\\s+1\\s+0$`,
        "m",
      ),
    );

    // The cloud's replicator stops (its node restarts): the edge's batches reach the cloud's stream
    // and wait there, then the link is cut as well.
    await replication.stop();
    for (let i = 0; i < 5; i++) await edge.twins.invoke(ref, "setTarget", { celsius: 15 + i });
    const waiting = await eventually(
      async () => {
        const r = await status();
        return r?.linkUp && r.unapplied > 0 && r.notSourced === 0 ? r : undefined;
      },
      "edge status: batches in the cloud's stream, not applied",
      120_000,
    );
    expect(waiting.backlog).toBe(waiting.unapplied);
    // No cloud node answers for the replicator: no counts (JSON has none).
    expect(waiting.replicators).toBe(0);
    expect(waiting.counts).toBeUndefined();
    await relay.cut();
    const down = await eventually(
      async () => {
        const r = await status();
        return r && !r.linkUp ? r : undefined;
      },
      "edge status: link down",
      60_000,
    );
    expect(down.backlog).toBeGreaterThan(0);
    expect(down.log).toBeUndefined();
    // The edge twin keeps serving commands during the outage.
    for (let i = 0; i < 5; i++) await edge.twins.invoke(ref, "setTarget", { celsius: 25 + i });
    expect(await sameVersions()).toBe(false);

    await relay.restore();
    replication = await startReplication();
    const after = await eventually(
      async () => {
        const r = await status();
        return r?.linkUp && r.backlog === 0 && (await sameVersions()) ? r : undefined;
      },
      "edge status: caught up after the outage",
      180_000,
    );
    expect(after.counts?.applied).toBeGreaterThan(0);
    expect(after.counts).toMatchObject({ conflict: 0, malformed: 0, failed: 0 });
    expect(after.replicators).toBe(1);

    // The same counts on the cloud node's /metrics; the edge node's shows its publisher's.
    const cloudMetrics = await (await fetch(`http://${cloud.metricsAddress}/metrics`)).text();
    const applied = metricValue(
      cloudMetrics,
      "doppel_edge_replication_batches_total",
      `edge="${EDGE}",outcome="applied"`,
    );
    expect(applied).toBeGreaterThan(0);
    expect(applied).toBe(replication.status.edges[EDGE]?.applied);
    expect(
      metricValue(cloudMetrics, "doppel_edge_replication_batches_total", `edge="${EDGE}",outcome="conflict"`),
    ).toBe(0);
    expect(cloudMetrics).toMatch(
      /doppel_edge_replication_batches_total\{[^}]*outcome="malformed"[^}]*\} 0\b/,
    );
    expect(
      metricValue(cloudMetrics, "doppel_edge_replication_last_sync_seconds", `edge="${EDGE}"`),
    ).toBeGreaterThan(0);
    const edgeMetrics = await (await fetch(`http://${edge.metricsAddress}/metrics`)).text();
    const published = metricValue(edgeMetrics, "doppel_edge_log_published_total", "otel_scope_name");
    expect(published).toBeGreaterThan(0);
    expect(published).toBe(publisher.published);
    expect(edgeMetrics).toMatch(/doppel_edge_log_pending\{[^}]*\} 0\b/);
  }, 400_000);

  it("answers status requests after ones published without a reply subject (nothing to answer: both nodes keep serving)", async () => {
    const asks = [
      { wire: edgeWire, subject: edgeLogStatusSubject(EDGE), answer: { edge: EDGE } },
      { wire: cloudWire, subject: REPLICATION_STATUS_SUBJECT, answer: { node: "cloud" } },
    ];
    for (const { wire, subject, answer } of asks) {
      wire.connection.publish(subject, new Uint8Array());
      const reply = await wire.connection.request(subject, new Uint8Array(), { timeout: 5000 });
      expect(reply.json()).toMatchObject(answer);
    }
  });
});
