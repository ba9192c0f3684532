import { join } from "node:path";
import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import {
  durableSourceRegistered,
  EDGE_SOURCE_CONSUMER,
  isEdgeSource,
} from "../../../runtime/devices/edge/durable-source.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { CloudReplication } from "../../../runtime/replication/cloud-replication.ts";
import { CLOUD_LOGS_STREAM, EDGE_LOG_STREAM, edgeLogSource } from "../../../runtime/replication/edge-log.ts";
import type { SourceRegistrar } from "../../../runtime/replication/source-registrar.ts";
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

const EDGE = "plant-lu";
const refs: TwinRef[] = Array.from({ length: 4 }, (_, i) => ({ type: "thermostat", id: `lu-${i}` }));

/**
 * A thick edge whose log an older edge node registered as an *ephemeral* source of the cloud's
 * `DOPPEL_EDGE_LOGS` (no durable consumer at the edge) is switched to durable sourcing when a
 * current edge node starts. The new consumer starts at the edge log's first message, so batches the
 * old source forwarded are sent again: the replicator's twin+seq check must make that harmless.
 * A source an update of the cloud's stream lost is put back by the running edge node (it asks
 * every tick).
 */
describe("thick edge: the log's source at the cloud, upgraded to durable sourcing and put back when lost", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let edge: EdgeNode | undefined;
  let hubWire: NatsTransport;
  let replication: CloudReplication;
  let registrar: SourceRegistrar;
  const store = new MemoryEventStore();

  const startEdge = () =>
    EdgeNode.start(
      edgeNodeConfig(
        "edge-lu",
        leaf,
        { name: EDGE, tick: "200ms", twins: ["thermostat"] },
        { store: { kind: "sqlite", path: join(dir, "edge.db") }, shards: 4 },
      ),
      { twins: [Thermostat], logger: silentLogger() },
    );
  const logsConfig = async (): Promise<StreamConfig> =>
    (await (await jetstreamManager(hubWire.connection)).streams.info(CLOUD_LOGS_STREAM)).config;
  /** Runs a round of commands at the edge and waits until the cloud's copies are at the edge's versions. */
  const round = async (current: EdgeNode, celsius: number) => {
    const thick = current.thick!;
    const versions = await Promise.all(
      refs.map(async (ref) => (await thick.node.twins.invoke(ref, "setTarget", { celsius })).version),
    );
    for (const [i, ref] of refs.entries()) {
      await eventually(
        async () => ((await store.readView(ref))?.version ?? 0) >= versions[i]!,
        `the cloud has ${ref.id} at version ${versions[i]}`,
        120_000,
      );
    }
  };

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("thick-upgrade", EDGE));
    hubWire = await NatsTransport.connect({ servers: hub.url, name: "thick-upgrade-hub" });
    replication = new CloudReplication(hubWire.connection, store, {
      shardOf: (r) => shardOf(r.type, r.id, 4),
      logger: silentLogger(),
      retryMs: 100,
      node: "cloud",
    });
    await replication.start();
    registrar = await startSourceRegistrar(hubWire.connection);
  }, 120_000);
  afterAll(async () => {
    await edge?.stop();
    await replication?.stop();
    await registrar?.stop();
    await hubWire?.close();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("re-registers the log's source with the durable consumer; every twin's cloud log still equals its edge log", async () => {
    edge = await startEdge();
    const first = edge;
    await eventually(() => first.thick!.log.registered, "the edge log registered at the cloud", 60_000);
    expect(durableSourceRegistered(await logsConfig(), edgeLogSource(EDGE))).toBe(true);
    await round(first, 10);

    // Made old by hand, as an older edge node registered it: the source without its consumer
    // (the hub then creates an ephemeral consumer itself), the durable consumer deleted. No
    // registrar answers meanwhile: the running node asks every tick and would put the durable
    // source back at once (an older node, which asked once, would not have). The
    // cloud stream's duplicate window is made short, as if the upgrade came long after: the
    // batches sent again then reach the replicator instead of being dropped by their message ids.
    await registrar.stop();
    const old = await logsConfig();
    await (await jetstreamManager(hubWire.connection)).streams.update(CLOUD_LOGS_STREAM, {
      ...old,
      duplicate_window: nanos(100),
      sources: (old.sources ?? []).map((s) => {
        if (!isEdgeSource(s, EDGE)) return s;
        const { consumer: _durable, ...ephemeral } = s;
        return ephemeral;
      }),
    });
    const leafWire = await NatsTransport.connect({ servers: leaf.url, name: "thick-upgrade-leaf" });
    try {
      const leafJsm = await jetstreamManager(leafWire.connection);
      await leafJsm.consumers.delete(EDGE_LOG_STREAM, EDGE_SOURCE_CONSUMER);
      expect(durableSourceRegistered(await logsConfig(), edgeLogSource(EDGE))).toBe(false);
      // Its batches now go through the old, ephemeral source.
      await round(first, 12);
      await round(first, 14);
      await edge.stop();
      edge = undefined;
      registrar = await startSourceRegistrar(hubWire.connection);

      edge = await startEdge();
      const current = edge;
      await eventually(
        async () => (durableSourceRegistered(await logsConfig(), edgeLogSource(EDGE)) ? true : undefined),
        "the log's source re-registered with the durable consumer",
        60_000,
      );
      await round(current, 16);
      await round(current, 18);
      const logLast = (await leafJsm.streams.info(EDGE_LOG_STREAM)).state.last_seq;
      // The new consumer delivered the whole log, from its first message (what the old source sent too).
      await eventually(
        async () =>
          (await leafJsm.consumers.info(EDGE_LOG_STREAM, EDGE_SOURCE_CONSUMER)).delivered.stream_seq >=
          logLast
            ? true
            : undefined,
        "the durable consumer delivered the edge's whole log",
        60_000,
      );
      for (const ref of refs) {
        const edgeLog = await current.thick!.node.engine.store.readEvents(ref, 0);
        const head = edgeLog.at(-1)!.seq;
        const cloudLog = await eventually(
          async () => {
            const log = await store.readEvents(ref, 0);
            return log.length >= head ? log : undefined;
          },
          `the cloud's log of ${ref.id} is complete`,
          60_000,
        );
        // No duplicate, no gap (the edge twins' reminders may have written more since the edge's read).
        expect(cloudLog.map((e) => e.seq)).toEqual(Array.from({ length: cloudLog.length }, (_, i) => i + 1));
        expect(cloudLog.filter((e) => e.seq <= head).map(sameEvent)).toEqual(edgeLog.map(sameEvent));
      }
      // Batches sent again that the hub stored again were skipped as duplicates (whether it stores
      // them again is nats-server's: it may drop them as already sourced, so their number is not
      // asserted); nothing else went wrong.
      expect(replication.counts).toMatchObject({ conflict: 0, malformed: 0, failed: 0 });
      console.log(JSON.stringify({ scenario: "thick log source upgrade", counts: replication.counts }));
    } finally {
      await leafWire.close();
    }
  }, 400_000);

  it("puts back the log's source that an update of the cloud's stream lost, while the edge node runs", async () => {
    edge ??= await startEdge();
    const current = edge;
    await eventually(() => current.thick!.log.registered, "the edge log registered at the cloud", 60_000);
    // What another registrar's read-modify-write of the stream for another edge, at the same
    // moment, leaves: the stream without this edge's source.
    const config = await logsConfig();
    await (await jetstreamManager(hubWire.connection)).streams.update(CLOUD_LOGS_STREAM, {
      ...config,
      sources: (config.sources ?? []).filter((s) => !isEdgeSource(s, EDGE)),
    });
    await eventually(
      async () => (durableSourceRegistered(await logsConfig(), edgeLogSource(EDGE)) ? true : undefined),
      "the running edge node's next ask put the log's source back",
      60_000,
    );
    expect(current.thick!.log.registered).toBe(true);
    await round(current, 20);
  }, 200_000);
});
