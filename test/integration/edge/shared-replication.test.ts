import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { CloudReplication } from "../../../runtime/replication/cloud-replication.ts";
import { CLOUD_LOGS_STREAM, EDGE_LOG_STREAM } from "../../../runtime/replication/edge-log.ts";
import type { SourceRegistrar } from "../../../runtime/replication/source-registrar.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../../support/eventually.ts";
import { sameEvent } from "../../support/replicated-events.ts";
import {
  edgeNodeConfig,
  type LinkRelay,
  type NatsProcess,
  startEdgeServers,
  startSourceRegistrar,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-w";
const TWINS = 8;
const COMMANDS = 12;
const refs: TwinRef[] = Array.from({ length: TWINS }, (_, i) => ({ type: "thermostat", id: `room-${i}` }));

/**
 * Several cloud nodes share the replicator's durable consumer (a work queue): here two
 * replicators, each on its own connection to the hub, apply one thick edge's log to one shared
 * store. The edge runs from `EdgeNode.start` with `edge.twins`; its log piles up in the cloud's
 * stream while the replicators are stopped, then both start at once and take batches of the same
 * twins at the same time. Whatever
 * order they apply in, every twin's cloud log equals its edge log: no fork, no loss, no
 * duplicate (a batch that came before its predecessor is a gap and redelivered).
 */
describe("thick edge from EdgeNode.start: two cloud replicators sharing the consumer; changing edge twin types", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let edge: EdgeNode;
  const store = new MemoryEventStore();
  const wires: NatsTransport[] = [];
  const replicators: CloudReplication[] = [];
  const registrars: SourceRegistrar[] = [];

  /** Two replicators, as two cloud nodes run them, each on its own connection to the hub. */
  const startReplicators = async () => {
    replicators.length = 0;
    const started = ["cloud-a", "cloud-b"].map(async (node) => {
      const wire = await NatsTransport.connect({ servers: hub.url, name: node });
      wires.push(wire);
      const replication = new CloudReplication(wire.connection, store, {
        shardOf: (r) => shardOf(r.type, r.id, 4),
        logger: silentLogger(),
        retryMs: 100,
        node,
      });
      await replication.start();
      replicators.push(replication);
      registrars.push(await startSourceRegistrar(wire.connection));
    });
    await Promise.all(started);
  };

  const startEdge = (twins?: string[]) =>
    EdgeNode.start(
      edgeNodeConfig(
        "edge-w",
        leaf,
        { name: EDGE, tick: "200ms", ...(twins ? { twins } : {}) },
        { store: { kind: "sqlite", path: join(dir, "edge.db") }, shards: 4 },
      ),
      { twins: [Thermostat, Pump], logger: silentLogger() },
    );

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("shared-replication", EDGE));
    await startReplicators();
    edge = await startEdge(["thermostat"]);
  }, 180_000);
  afterAll(async () => {
    await edge?.stop();
    for (const replication of replicators) await replication.stop();
    for (const registrar of registrars) await registrar.stop();
    for (const wire of wires) await wire.close();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("every twin's cloud log equals its edge log, whichever replicator applied which batch", async () => {
    const thick = edge.thick!;
    await eventually(() => thick.log.registered, "the edge log registered at the cloud", 60_000);
    // The replicators stop; the edge's batches pile up in the cloud's stream, unapplied.
    for (const replication of replicators) await replication.stop();
    for (let round = 0; round < COMMANDS; round++) {
      await Promise.all(
        refs.map((ref) => thick.node.twins.invoke(ref, "setTarget", { celsius: 6 + 2 * round })),
      );
      // One batch per twin per round in the edge's log (the publisher would coalesce otherwise).
      await eventually(() => thick.log.pending === 0, "the round is in the edge's log", 60_000);
    }
    const leafWire = await NatsTransport.connect({ servers: leaf.url, name: "edge-log-reader" });
    const published = (await (await jetstreamManager(leafWire.connection)).streams.info(EDGE_LOG_STREAM))
      .state.messages;
    await leafWire.close();
    expect(published).toBeGreaterThanOrEqual(TWINS * 2);
    const hubJsm = await jetstreamManager(wires[0]!.connection);
    await eventually(
      async () => (await hubJsm.streams.info(CLOUD_LOGS_STREAM)).state.messages >= published,
      "the edge's batches sourced into the cloud's stream",
      120_000,
    );
    // Both start at once and pull from the same backlog: batches of one twin are spread over them.
    await startReplicators();
    for (const ref of refs) {
      // The edge twins' reminders may keep writing: compare at a moment both are at one version.
      const head = await eventually(
        async () => {
          const [e, c] = [await thick.node.twins.get(ref), await store.readView(ref)];
          return c && c.version >= COMMANDS && c.version === e.version ? c.version : undefined;
        },
        `the cloud caught up with ${ref.id}`,
        180_000,
      );
      const cloudLog = await store.readEvents(ref, 0);
      const edgeLog = (await thick.node.engine.store.readEvents(ref, 0)).filter((e) => e.seq <= head);
      expect(cloudLog.map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
      expect(cloudLog.map(sameEvent)).toEqual(edgeLog.map(sameEvent));
    }
    const counts = replicators.map((r) => r.counts);
    for (const c of counts) expect(c).toMatchObject({ conflict: 0, malformed: 0 });
    // Both took part (the work queue spread the backlog over them).
    for (const c of counts) expect(c.applied + c.duplicate + c.gap).toBeGreaterThan(0);
    console.log(JSON.stringify({ scenario: "shared replicator consumer", counts }));
  }, 400_000);

  it("an edge restarted without one of its edge twin types is refused; adding a type is fine", async () => {
    await edge.stop();
    await expect(startEdge()).rejects.toMatchObject({
      code: "FAILED_PRECONDITION",
      details: { reason: "edge-types-dropped", types: ["thermostat"] },
    });
    await expect(startEdge(["pump"])).rejects.toMatchObject({
      code: "FAILED_PRECONDITION",
      message: expect.stringContaining("takes thermostat, which edge.twins (pump) does not list"),
    });
    edge = await startEdge(["thermostat", "pump"]);
    // Both run at the edge now: the pump's commands are served by the edge's node.
    await edge.thick!.node.twins.invoke({ type: "pump", id: "p-1" }, "start", { rpm: 1500 });
    expect((await edge.thick!.node.twins.get({ type: "thermostat", id: "room-0" })).version).toBeGreaterThan(
      0,
    );
  }, 120_000);

  it("a thick edge starts with the link down, serves its twins and catches the cloud up once the link is back", async () => {
    await edge.stop();
    await relay.cut();
    edge = await startEdge(["thermostat", "pump"]);
    expect(edge.status.linkUp).toBe(false);
    const ref = { type: "thermostat", id: "room-0" };
    const done = await edge.thick!.node.twins.invoke(ref, "setMode", { mode: "off" });
    await relay.restore();
    await eventually(
      async () => ((await store.readView(ref))?.version ?? 0) >= done.version,
      "the cloud has what the edge did while it started with the link down",
      180_000,
    );
  }, 300_000);
});
