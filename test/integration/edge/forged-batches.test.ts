import { join } from "node:path";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import { domainApi, EDGE_SOURCE_CONSUMER } from "../../../runtime/devices/edge/durable-source.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { CloudReplication } from "../../../runtime/replication/cloud-replication.ts";
import {
  CLOUD_LOGS_STREAM,
  EDGE_LOG_STREAM,
  edgeLogDeliverSubject,
} from "../../../runtime/replication/edge-log.ts";
import { encodeBatch, type ReplicatedBatch } from "../../../runtime/replication/replicated-batch.ts";
import type { SourceRegistrar } from "../../../runtime/replication/source-registrar.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../../support/eventually.ts";
import { sameEvent } from "../../support/replicated-events.ts";
import {
  edgeNodeConfig,
  HUB_DOMAIN,
  type LinkRelay,
  type NatsProcess,
  startEdgeServers,
  startLeaf,
  startSourceRegistrar,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE_A = "plant-fa";
const FORGER = "plant-fx";
const ref: TwinRef = { type: "thermostat", id: "fa-boiler" };

/**
 * A compromised edge controls its own nats-server: its log stream's subjects, the batches in it and
 * (with the leaf credentials every edge has today) the cloud's stream configuration. Here a second
 * leaf, `plant-fx` with its own JetStream domain, holds batches that write edge `plant-fa`'s twin at
 * its next seq, naming plant-fa in the batch's `edge` field, on its own subject or on plant-fa's,
 * and gets them sourced into the cloud's `DOPPEL_EDGE_LOGS` through a source of its own (a durable
 * consumer it made without a filter). None may touch plant-fa's twin in the cloud.
 */
describe("thick edge trust: batches from one edge cannot write another edge's twins", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let forgerLeaf: NatsProcess;
  let edge: EdgeNode;
  let hubWire: NatsTransport;
  let forgerWire: NatsTransport;
  let replication: CloudReplication;
  let registrar: SourceRegistrar;
  const store = new MemoryEventStore();

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("forged", EDGE_A));
    forgerLeaf = await startLeaf(dir, FORGER, relay.url);
    hubWire = await NatsTransport.connect({ servers: hub.url, name: "forged-hub" });
    replication = new CloudReplication(hubWire.connection, store, {
      shardOf: (r) => shardOf(r.type, r.id, 4),
      logger: silentLogger(),
      retryMs: 100,
      node: "cloud",
    });
    await replication.start();
    registrar = await startSourceRegistrar(hubWire.connection);
    edge = await EdgeNode.start(
      edgeNodeConfig(
        "edge-fa",
        leaf,
        { name: EDGE_A, tick: "200ms", twins: ["thermostat"] },
        { store: { kind: "sqlite", path: join(dir, "edge.db") }, shards: 4 },
      ),
      { twins: [Thermostat], logger: silentLogger() },
    );
    forgerWire = await NatsTransport.connect({ servers: forgerLeaf.url, name: "forger" });
  }, 180_000);
  afterAll(async () => {
    await edge?.stop();
    await replication?.stop();
    await registrar?.stop();
    await forgerWire?.close();
    await hubWire?.close();
    await forgerLeaf?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  /** Runs a command on the edge's twin and waits until the cloud has its version. */
  const command = async (celsius: number) => {
    const { version } = await edge.thick!.node.twins.invoke(ref, "setTarget", { celsius });
    await eventually(
      async () => ((await store.readView(ref))?.version ?? 0) >= version,
      `the cloud has ${ref.id} at version ${version}`,
      120_000,
    );
  };

  it("refuses and counts forged batches (edge field, subject, source); the twin's cloud log stays its edge log and later batches apply", async () => {
    await eventually(() => edge.thick!.log.registered, "edge A's log registered at the cloud", 60_000);
    await command(11);
    const head = (await store.readView(ref))!;
    const forged = (id: string): ReplicatedBatch => ({
      edge: EDGE_A,
      ref,
      events: [
        {
          seq: head.version + 1,
          type: "setPointChanged",
          data: { setPoint: 35 },
          at: Date.now(),
          commitId: `forged-${id}`,
          writer: { node: "forger", epoch: 1 },
        },
      ],
      view: { ...head, version: head.version + 1, state: { ...head.state, setPoint: 35 } },
    });

    // The forger's log stream takes any edge's subjects, and its own source consumer has no filter.
    const forgerJsm = await jetstreamManager(forgerWire.connection);
    await forgerJsm.streams.add({ name: EDGE_LOG_STREAM, subjects: ["doppel.edge-log.>"] });
    const js = forgerJsm.jetstream();
    // 1: names edge A in the batch, on the forger's own subject.
    await js.publish(`doppel.edge-log.${FORGER}.${ref.type}.${ref.id}`, encodeBatch(forged("field")));
    // 2: names edge A in the batch and in the subject: only the hub's source stamp tells.
    await js.publish(`doppel.edge-log.${EDGE_A}.${ref.type}.${ref.id}`, encodeBatch(forged("subject")));
    await forgerJsm.consumers.add(EDGE_LOG_STREAM, {
      durable_name: EDGE_SOURCE_CONSUMER,
      ack_policy: AckPolicy.FlowControl,
      deliver_subject: edgeLogDeliverSubject(FORGER),
      flow_control: true,
      idle_heartbeat: nanos(1000),
    });
    // Registered through the cloud's JetStream API across the leaf link, as every edge may today.
    const cloudApi = await jetstreamManager(forgerWire.connection, { domain: HUB_DOMAIN });
    const logs = await cloudApi.streams.info(CLOUD_LOGS_STREAM);
    await cloudApi.streams.update(CLOUD_LOGS_STREAM, {
      ...logs.config,
      sources: [
        ...(logs.config.sources ?? []),
        {
          name: EDGE_LOG_STREAM,
          external: { api: domainApi(FORGER), deliver: "" },
          consumer: { name: EDGE_SOURCE_CONSUMER, deliver_subject: edgeLogDeliverSubject(FORGER) },
        },
      ],
    });

    await eventually(
      () => (replication.counts.forged >= 2 ? true : undefined),
      "both forged batches refused",
      120_000,
    );
    // Counted against the edge whose source they came through.
    expect(replication.status.edges[FORGER]).toMatchObject({ forged: 2, applied: 0 });
    expect(replication.status.edges[EDGE_A]?.forged ?? 0).toBe(0);
    expect(replication.counts).toMatchObject({ conflict: 0, malformed: 0, failed: 0 });

    // Edge A's own later batches still apply, and the cloud's log is exactly the edge's.
    await command(13);
    await command(15);
    const edgeLog = await edge.thick!.node.engine.store.readEvents(ref, 0);
    const cloudLog = await store.readEvents(ref, 0);
    expect(cloudLog.map((e) => e.seq)).toEqual(Array.from({ length: cloudLog.length }, (_, i) => i + 1));
    expect(cloudLog.slice(0, edgeLog.length).map(sameEvent)).toEqual(edgeLog.map(sameEvent));
    expect(cloudLog.some((e) => e.commitId.startsWith("forged-"))).toBe(false);
    // The forger's publish on edge A's log subject did not land in edge A's own log stream (the
    // leaf remote imports none of the subjects the edge's streams take).
    const leafWire = await NatsTransport.connect({ servers: leaf.url, name: "forged-edge-reader" });
    try {
      const edgeJsm = await jetstreamManager(leafWire.connection);
      const held = (await edgeJsm.streams.info(EDGE_LOG_STREAM)).state.last_seq;
      for (let seq = 1; seq <= held; seq++) {
        const message = await edgeJsm.streams.getMessage(EDGE_LOG_STREAM, { seq });
        expect(message?.string() ?? "").not.toContain("forged-");
      }
    } finally {
      await leafWire.close();
    }
    expect((await store.readView(ref))?.state["setPoint"]).toBe(15);
  }, 400_000);
});
