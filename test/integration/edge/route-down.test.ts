import { join } from "node:path";
import { DoppelNode, MemoryEventStore, NatsTransport, SqliteEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import { edgeInboxPrefix } from "../../../runtime/devices/edge/edge-subjects.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import type { CloudReplication } from "../../../runtime/replication/cloud-replication.ts";
import { EdgeLogPublisher } from "../../../runtime/replication/edge-log.ts";
import { serveEdgeRpc } from "../../../runtime/routing/edge-rpc.ts";
import type { NodeRpcServer } from "../../../runtime/routing/node-rpc.ts";
import { createKey } from "../../../runtime/security/api-keys.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  type LinkRelay,
  type NatsProcess,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-r";
const ref: TwinRef = { type: "thermostat", id: "boiler-r" };

/**
 * Commands routed down: a cloud gRPC client invokes a command on a twin that runs at the edge; the
 * cloud forwards it over the leaf link to the edge's node, the edge's engine applies it (with the
 * caller's principal) and the cloud's history shows it after replication. With the link cut the
 * call fails with UNAVAILABLE naming the edge; with the link back it works again. Run against an
 * open hub and against one locked per edge (hub-config.ts): the edge's log replicates and commands
 * and desired updates go down through the edge's least permissions.
 */
describe.each([
  { hub: "open hub", lockHub: undefined },
  { hub: "hub with per-edge users", lockHub: {} },
])("thick edge: commands routed down to the edge owner ($hub)", ({ lockHub }) => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: DoppelNode;
  let edgeWire: NatsTransport;
  let replication: CloudReplication;
  let publisher: EdgeLogPublisher;
  let rpc: NodeRpcServer;
  let client: DoppelClient;
  let keyId: string;
  const cloudStore = new MemoryEventStore();
  let edgeStore: SqliteEventStore;

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("route-down", EDGE, { lockHub }));
    const keysFile = join(dir, "api-keys.json");
    const key = createKey(keysFile, { scopes: ["read", "write", "command"] });
    keyId = key.record.id;
    cloud = await DoppelNode.start(
      { ...cloudNodeConfig("cloud", hub), grpc: { listen: "127.0.0.1:0", apiKeys: keysFile } },
      { twins: [Thermostat], store: cloudStore, logger: silentLogger() },
    );
    client = new DoppelClient(cloud.grpcAddress!, { token: key.key, timeoutMs: 30_000 });
    // The cloud node applies the edges' logs to its store itself (nats.replicateEdges, on by default).
    replication = cloud.replication!;
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
      },
      { twins: [Thermostat], store: edgeStore, logger: silentLogger() },
    );
    // The edge's inbox, as an edge node's connection has it: a locked hub delivers answers there only.
    edgeWire = await NatsTransport.connect({
      servers: leaf.url,
      name: "edge-rpc",
      reconnectTimeWaitMs: 100,
      inboxPrefix: edgeInboxPrefix(EDGE),
    });
    publisher = new EdgeLogPublisher(edgeWire.connection, edgeStore, {
      edge: EDGE,
      types: ["thermostat"],
      tickMs: 200,
      maxAgeMs: 7 * 24 * 3_600_000,
      maxBytes: 64 * 1024 ** 2,
      logger: silentLogger(),
    });
    await publisher.start((listener) => edge.engine.feed.subscribe("*", listener));
    rpc = serveEdgeRpc({
      transport: edgeWire,
      edge: EDGE,
      twins: edge.twins,
      types: ["thermostat"],
      clock: edge.engine.clock,
      logger: silentLogger(),
    });
  }, 120_000);
  afterAll(async () => {
    client?.close();
    await rpc?.stop();
    await publisher?.stop();
    await edgeWire?.close();
    await edge?.stop();
    await edgeStore?.close().catch(() => undefined);
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  /** Waits until the cloud's copy of the twin is at least at `version`. */
  const cloudAt = (version: number, what: string) =>
    eventually(
      async () => {
        const view = await client.getTwin(ref).catch(() => undefined);
        return view && view.version >= version ? view : undefined;
      },
      what,
      120_000,
    );
  /** Invokes in the cloud until the edge's answer comes (the leaf link's interest may lag its TCP link). */
  const invokeWhenLinked = (celsius: number) =>
    eventually(
      () =>
        client.invoke(ref, "setTarget", { celsius }).catch((error: unknown) => {
          if ((error as { code?: string }).code === "UNAVAILABLE") return undefined;
          throw error;
        }),
      "the command reaches the edge",
      90_000,
    );

  it("applies a cloud command at the edge, fails fast while the link is down, and works again after", async () => {
    await eventually(() => (publisher.registered ? true : undefined), "the edge log registered", 60_000);
    await edge.twins.invoke(ref, "setTarget", { celsius: 20 });
    await cloudAt((await edge.twins.get(ref)).version, "the twin replicated to the cloud");

    // A cloud gRPC client's command runs at the edge, with the caller's principal.
    const answer = await invokeWhenLinked(23);
    const edgeView = await edge.twins.get(ref);
    expect(edgeView.state).toMatchObject({ setPoint: 23 });
    expect(answer.version).toBeLessThanOrEqual(edgeView.version);
    const edgeLog = await edgeStore.readHistory(ref, { limit: 10_000 });
    const applied = edgeLog.find((e) => e.seq === answer.version);
    expect(applied).toMatchObject({ type: "setPointChanged", principal: `service-key:${keyId}` });
    // The cloud's history shows it after replication; its copies stay the replicator's.
    await cloudAt(answer.version, "the routed command replicated back");
    const cloudLog = await cloud.twins.history(ref, { limit: 10_000 });
    expect(cloudLog.find((e) => e.seq === answer.version)).toMatchObject({
      type: "setPointChanged",
      principal: `service-key:${keyId}`,
    });
    expect(
      (await cloudStore.readEvents(ref, 0)).every((e) => e.writer.node.startsWith(`edge:${EDGE}/`)),
    ).toBe(true);
    // Desired updates go down too.
    const desired = await client.updateDesired(ref, { heating: false });
    expect(desired.desired).toMatchObject({ heating: false });
    expect((await edge.twins.get(ref)).desired).toMatchObject({ heating: false });

    // Link cut: the cloud fails at once with UNAVAILABLE naming the edge; reads stay served.
    await relay.cut();
    const refused = await eventually(
      () =>
        client.invoke(ref, "setTarget", { celsius: 24 }).then(
          () => undefined,
          (error: unknown) => ((error as { code?: string }).code === "UNAVAILABLE" ? error : undefined),
        ),
      "the cloud sees the edge unreachable",
      60_000,
    );
    expect(refused).toMatchObject({ code: "UNAVAILABLE" });
    expect(String((refused as Error).message)).toContain(EDGE);
    expect((await client.getTwin(ref)).state).toMatchObject({ setPoint: 23 });
    // The edge keeps serving its own commands meanwhile.
    await edge.twins.invoke(ref, "setTarget", { celsius: 18 });

    // Link back: routed commands work again, and everything reaches the cloud.
    await relay.restore();
    const again = await invokeWhenLinked(25);
    expect((await edge.twins.get(ref)).state).toMatchObject({ setPoint: 25 });
    const back = await cloudAt(again.version, "the cloud caught up after the outage");
    expect(back.state).toMatchObject({ setPoint: 25 });
    expect(replication.counts).toMatchObject({ conflict: 0, malformed: 0, gap: 0 });
  }, 400_000);
});
