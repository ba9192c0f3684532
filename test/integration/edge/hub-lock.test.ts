import { jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { Msg } from "@nats-io/nats-core";
import { DoppelNode, EdgeNode, MemoryEventStore, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeOfSource } from "../../../runtime/devices/edge/durable-source.ts";
import { edgeInboxPrefix } from "../../../runtime/devices/edge/edge-subjects.ts";
import { requestSourceRegistration } from "../../../runtime/devices/edge/source-registration.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { eventually } from "../../support/eventually.ts";
import {
  cloudNodeConfig,
  edgeNodeConfig,
  HUB_DOMAIN,
  hubConnection,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  startEdgeServers,
  startLeaf,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-l";
const OTHER = "plant-m";
const OTHER_LEAF_USER = { user: "edge-other", pass: "leaf-secret-2" };
const INGRESS = "DOPPEL_INGRESS";

/**
 * A hub locked per edge (hub-config.ts: one leaf-only user per edge with its least permissions),
 * the edge's leaf with a running edge node, and a second edge's leaf. A client of the edge's leaf
 * server (what the edge's operator, or anyone holding the edge's leaf credentials, can run) tries
 * the cloud's JetStream API and the other edge's subjects. That the forwarding, the thick edge's
 * log, routed commands and desired pushes still work through such a hub is tested by thin-edge and
 * route-down (each run against an open and a locked hub).
 */
describe("a hub with per-edge leaf users: what an edge's credentials cannot do", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let otherLeaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  let cloudWire: NatsTransport;
  let intruder: NatsTransport;
  let otherWire: NatsTransport;

  const ingressConfig = async (): Promise<StreamConfig> =>
    (await (await jetstreamManager(cloudWire.connection)).streams.info(INGRESS)).config;
  const sourcedEdges = async () =>
    ((await ingressConfig()).sources ?? []).map((source) => edgeOfSource(source)).sort();

  beforeAll(async () => {
    ({ dir, hub, relay, leaf } = await startEdgeServers("hub-lock", EDGE, {
      lockHub: { others: [{ edge: OTHER, user: OTHER_LEAF_USER.user, password: OTHER_LEAF_USER.pass }] },
    }));
    otherLeaf = await startLeaf(dir, OTHER, relay.url, { credentials: OTHER_LEAF_USER });
    cloud = await DoppelNode.start(cloudNodeConfig("cloud", hub), {
      twins: [Pump],
      store: new MemoryEventStore(),
      logger: silentLogger(),
    });
    edge = await EdgeNode.start(edgeNodeConfig("edge", leaf, { name: EDGE, tick: "200ms" }), {
      logger: silentLogger(),
    });
    cloudWire = await NatsTransport.connect({ ...hubConnection(hub), name: "hub-lock-cloud" });
    // Answers to what it may ask come back under the edge's own subjects, as the edge node's do.
    intruder = await NatsTransport.connect({
      servers: leaf.url,
      name: "intruder",
      inboxPrefix: edgeInboxPrefix(EDGE),
    });
    otherWire = await NatsTransport.connect({ servers: otherLeaf.url, name: "other-edge" });
  }, 180_000);
  afterAll(async () => {
    await intruder?.close();
    await otherWire?.close();
    await cloudWire?.close();
    await edge?.stop();
    await cloud?.stop();
    await otherLeaf?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  /** The intruder's own edge's registration: answered, so the link is up and the cloud reachable from it. */
  const registerOwn = () =>
    requestSourceRegistration(intruder.connection, EDGE, { kind: "thin", stream: "DOPPEL_EDGE" }, 10_000);

  it("cannot delete, rewrite or read the cloud's streams through $JS.cloud.API", async () => {
    await linkUp(edge);
    await eventually(
      async () => ((await sourcedEdges()).includes(EDGE) ? true : undefined),
      "the edge's source registered",
    );
    const before = await ingressConfig();
    const cloudApi = await jetstreamManager(intruder.connection, {
      domain: HUB_DOMAIN,
      timeout: 5000,
      checkAPI: false,
    });

    const refusals = await Promise.all([
      cloudApi.streams.delete(INGRESS).then(
        () => "deleted",
        (error: unknown) => String(error),
      ),
      cloudApi.streams.update(INGRESS, { ...before, sources: [] }).then(
        () => "updated",
        (error: unknown) => String(error),
      ),
      cloudApi.streams.info(INGRESS).then(
        () => "read",
        (error: unknown) => String(error),
      ),
    ]);
    // The hub does not pass the cloud's API interest to this edge: no route to it from here (the
    // no-responders status, which nats.js reports for a JetStream API request as JetStream not enabled).
    for (const refusal of refusals) expect(refusal).toMatch(/JetStreamNotEnabled: jetstream is not enabled/);
    // Meanwhile the same client reaches the cloud where it may: its own edge's registration.
    expect(await registerOwn()).toMatchObject({ changed: false });
    const after = await ingressConfig();
    expect(after.sources).toEqual(before.sources);
    expect(after.subjects).toEqual(before.subjects);
  });

  it("cannot register a source for another edge, nor receive another edge's routed commands", async () => {
    await expect(
      requestSourceRegistration(intruder.connection, OTHER, { kind: "thin", stream: "DOPPEL_EDGE" }, 5000),
    ).rejects.toThrow(/no responders/);
    // After the refused request, on the same connection: its own registration is answered.
    await registerOwn();
    expect(await sourcedEdges()).toEqual([EDGE]);

    const stolen: Msg[] = [];
    const taken: Msg[] = [];
    const probes: Msg[] = [];
    intruder.connection.subscribe(`doppel.edge.${OTHER}.rpc`, { callback: (_e, m) => void stolen.push(m) });
    intruder.connection.subscribe(`doppel.edge.${OTHER}.>`, { callback: (_e, m) => void stolen.push(m) });
    intruder.connection.subscribe(`doppel.edge.${EDGE}.probe`, { callback: (_e, m) => void probes.push(m) });
    otherWire.connection.subscribe(`doppel.edge.${OTHER}.rpc`, { callback: (_e, m) => void taken.push(m) });
    await intruder.connection.flush();
    await otherWire.connection.flush();
    // The cloud sends the other edge a command, then this edge a probe; once the probe is here,
    // anything of the first that was going to reach this edge would have (one hub, in order).
    const sendRound = async () => {
      cloudWire.connection.publish(`doppel.edge.${OTHER}.rpc`, "command for the other edge");
      cloudWire.connection.publish(`doppel.edge.${EDGE}.probe`, "probe");
      await cloudWire.connection.flush();
    };
    await eventually(
      async () => {
        await sendRound();
        return taken.length > 0 && probes.length > 0 ? true : undefined;
      },
      "the other edge gets its command and this edge its probe",
      60_000,
      200,
    );
    expect(stolen).toEqual([]);
    expect(new TextDecoder().decode(taken[0]!.data)).toBe("command for the other edge");
    // The refused subscriptions did not cost the edge its link.
    expect(edge.status.linkUp).toBe(true);
  });
});
