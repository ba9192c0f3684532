import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { createAccount } from "@nats-io/nkeys";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DoppelNode, EdgeNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REVOCATIONS_STREAM, revocationSubject } from "../../../runtime/devices/auth/cloud-revocation.ts";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { EdgeRevocations, HUB_SEQ_HEADER } from "../../../runtime/devices/edge/edge-revocations.ts";
import { edgeInboxPrefix } from "../../../runtime/devices/edge/edge-subjects.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  type EdgeDeviceAuth,
  type EdgeServers,
  edgeDeviceAuth,
  edgeNodeConfig,
  HUB_DOMAIN,
  hubConnection,
  linkUp,
  restoreLink,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-revoke";

/**
 * Revocation made in the cloud reaching the edge, thin and thick (whose node runs the callout): the cloud node (with `nats.deviceAuth`, its own
 * credentials file) publishes each revocation into the hub's `DOPPEL_REVOCATIONS`; the edge node
 * copies it into the edge's domain through the cloud's revocation feed and its auth callout (on
 * the leaf server) refuses and kicks the device. The edge's credentials file is a copy of the cloud's (what an operator distributes);
 * nothing is revoked in it.
 */
describe.each([
  { kind: "thin", hub: "open hub", lockHub: undefined },
  { kind: "thick", hub: "open hub", lockHub: undefined },
  // The edge's hub user has no right to the cloud's JetStream API: the feed is what it reads.
  { kind: "thin", hub: "hub with per-edge users", lockHub: {} },
] as const)(
  "$kind edge ($hub): a device revoked in the cloud is refused and disconnected there",
  ({ kind, lockHub }) => {
    let servers: EdgeServers;
    let auth: EdgeDeviceAuth;
    let cloud: DoppelNode;
    let edge: EdgeNode;
    let cloudCredentials: DeviceCredentials;
    let cloudFile: string;
    let edgeFile: string;
    let hubNc: NatsConnection;
    const secrets = new Map<string, string>();
    const open: NatsConnection[] = [];

    const device = (id: string) => `thermostat/${id}`;

    /** A plain NATS client at the edge with `id`'s credential (or `pass`); no reconnects. */
    async function connectAtEdge(id: string, pass = secrets.get(id)): Promise<NatsConnection> {
      const nc = await connect({
        servers: servers.leaf.url,
        user: device(id),
        pass: pass as string,
        maxReconnectAttempts: 0,
        timeout: 10_000,
      });
      open.push(nc);
      return nc;
    }

    function startEdge(): Promise<EdgeNode> {
      return EdgeNode.start(
        edgeNodeConfig(
          "edge",
          servers.leaf,
          {
            name: EDGE,
            hubDomain: HUB_DOMAIN,
            tick: "200ms",
            ...(kind === "thick" ? { twins: ["thermostat"] } : {}),
          },
          {
            metrics: { listen: "127.0.0.1:0" },
            nats: auth.nats,
            // A thick edge's node runs the callout (its device link), on the embedded store.
            ...(kind === "thick"
              ? { store: { kind: "sqlite", path: join(servers.dir, "edge.db") }, shards: 4 }
              : {}),
          },
        ),
        { logger: silentLogger(), twins: [Thermostat] },
      );
    }

    /** The hub's record of `id`, once the cloud node has published it (undefined until then). */
    async function hubRecord(id: string): Promise<Record<string, unknown> | undefined> {
      const jsm = await jetstreamManager(hubNc);
      const message = await jsm.streams
        .getMessage(REVOCATIONS_STREAM, { last_by_subj: revocationSubject({ type: "thermostat", id }) })
        .catch(() => null);
      return message ? (message.json() as Record<string, unknown>) : undefined;
    }

    /** Revokes `id` in the cloud's file and waits until the cloud node published it into the hub's stream. */
    async function revokeInCloud(id: string): Promise<void> {
      cloudCredentials.revoke({ type: "thermostat", id });
      await eventually(
        async () => ((await hubRecord(id))?.["revokedAt"] !== undefined ? true : undefined),
        "the cloud published the revocation",
        60_000,
      );
    }

    /**
     * A connection to the edge's leaf server as the edge node's own user (its JetStream domain),
     * with its inbox (a locked hub lets the edge's user receive answers there only).
     */
    async function connectAsEdgeNode(): Promise<NatsConnection> {
      const nc = await connect({
        servers: servers.leaf.url,
        ...auth.nats.credentials,
        inboxPrefix: edgeInboxPrefix(EDGE),
      });
      open.push(nc);
      return nc;
    }

    /** Whether the edge's own copy of the hub's stream holds a record of `id` (copied from the hub). */
    async function edgeCopyHolds(nc: NatsConnection, id: string): Promise<boolean> {
      const jsm = await jetstreamManager(nc);
      const message = await jsm.streams
        .getMessage(REVOCATIONS_STREAM, { last_by_subj: revocationSubject({ type: "thermostat", id }) })
        .catch(() => null);
      return message?.header?.get(HUB_SEQ_HEADER) !== undefined;
    }

    const refusedInCloud = () => edge.deviceAuth?.stats.refused["revoked-in-cloud"] ?? 0;

    beforeAll(async () => {
      const dir = mkdtempSync(join(tmpdir(), "doppel-edge-revoke-"));
      cloudFile = join(dir, "cloud-device-credentials.json");
      edgeFile = join(dir, "edge-device-credentials.json");
      cloudCredentials = new DeviceCredentials(cloudFile);
      for (const id of ["up", "garbled", "outage", "stays", "again", "anew", "down", "copied"])
        secrets.set(id, cloudCredentials.provision({ type: "thermostat", id }).password);
      copyFileSync(cloudFile, edgeFile); // the operator's copy of the cloud's file at the edge
      auth = edgeDeviceAuth(edgeFile);
      servers = await startEdgeServers("revoke", EDGE, { dir, deviceAuth: auth.leaf, lockHub });
      const hub = hubConnection(servers.hub);
      hubNc = await connect({ servers: hub.servers, ...(hub.credentials ?? {}) });
      // The hub runs no callout in these tests: the cloud node's callout service waits for nothing,
      // its revocation watch and publisher are what is tested here.
      cloud = await DoppelNode.start(
        cloudNodeConfig("cloud", servers.hub, {
          deviceAuth: {
            issuerSeed: new TextDecoder().decode(createAccount().getSeed()),
            credentials: servers.hub.credentials ?? { user: "cloud-auth", pass: "unused" },
            credentialsFile: cloudFile,
            revocationPoll: "50ms",
          },
        }),
        { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
      );
      edge = await startEdge();
      await linkUp(edge);
    });
    afterAll(async () => {
      for (const nc of open) await nc.close().catch(() => undefined);
      await hubNc?.close();
      await edge?.stop();
      await cloud?.stop();
      await stopEdgeServers(servers ?? {});
    });

    it("link up: revoked in the cloud, the device connected at the edge is kicked and refused", async () => {
      expect(edge.thick !== undefined).toBe(kind === "thick");
      const nc = await connectAtEdge("up");
      const closed = nc.closed();
      cloudCredentials.revoke({ type: "thermostat", id: "up" });
      await closed; // kicked through the leaf server's system account
      const before = refusedInCloud();
      await expect(connectAtEdge("up")).rejects.toThrow(/Authorization Violation/);
      expect(refusedInCloud()).toBe(before + 1);
      expect(edge.revocations?.stats.kicked).toBeGreaterThanOrEqual(1);
      // Copied by the edge node through the cloud's feed into a stream of the edge's own (no mirror).
      expect(edge.revocations?.stats.copied).toBeGreaterThanOrEqual(1);
      // The edge's own file never revoked it.
      expect(new DeviceCredentials(edgeFile).isActive(device("up"))).toBe(true);
    });

    it("malformed records in the stream are counted and skipped; later ones still apply", async () => {
      const jsm = await jetstreamManager(hubNc);
      const js = jsm.jetstream();
      const malformed = edge.revocations?.stats.malformed ?? 0;
      await js.publish(
        revocationSubject({ type: "thermostat", id: "x1" }),
        new TextEncoder().encode("not json"),
      );
      await js.publish(
        revocationSubject({ type: "thermostat", id: "x2" }),
        new TextEncoder().encode(
          JSON.stringify({ device: "thermostat/stays", revokedAt: new Date().toISOString() }),
        ),
      );
      await js.publish(
        revocationSubject({ type: "thermostat", id: "x3" }),
        new TextEncoder().encode(JSON.stringify({ device: "thermostat/x3", revokedAt: "yesterday" })),
      );
      await eventually(
        () => ((edge.revocations?.stats.malformed ?? 0) - malformed === 3 ? true : undefined),
        "the three malformed records counted at the edge",
        60_000,
      );
      const scraped = await (await fetch(`http://${edge.metricsAddress}/metrics`)).text();
      expect(scraped).toMatch(
        new RegExp(`doppel_edge_revocations_total\\{[^}]*outcome="malformed"[^}]*\\} ${malformed + 3}\\b`),
      );
      // The record naming 'stays' on another device's subject revoked nothing.
      (await connectAtEdge("stays")).close();
      const nc = await connectAtEdge("garbled");
      const closed = nc.closed();
      cloudCredentials.revoke({ type: "thermostat", id: "garbled" });
      await closed;
      await expect(connectAtEdge("garbled")).rejects.toThrow(/Authorization Violation/);
    });

    it("link cut: the device still connects at the edge; once the link is back it is kicked and refused", async () => {
      await cutLink(servers.relay, edge);
      await revokeInCloud("outage");
      // The edge cannot know yet: the device connects (a fresh callout) and stays connected.
      const nc = await connectAtEdge("outage");
      const closed = nc.closed();
      await nc.flush();
      expect(edge.revocations?.record(device("outage"))).toBeUndefined();
      await restoreLink(servers.relay, edge);
      await closed;
      await expect(connectAtEdge("outage")).rejects.toThrow(/Authorization Violation/);
    });

    it("the edge node restarted with the link down still refuses what it learnt", async () => {
      await cutLink(servers.relay, edge);
      await edge.stop();
      edge = await startEdge();
      expect(edge.status.linkUp).toBe(false);
      expect(edge.revocations?.record(device("outage"))).toBeDefined();
      for (const id of ["up", "garbled", "outage"])
        await expect(connectAtEdge(id)).rejects.toThrow(/Authorization Violation/);
      expect(refusedInCloud()).toBe(3);
      (await connectAtEdge("stays")).close(); // not revoked: still let in
      await restoreLink(servers.relay, edge);
    });

    it("re-provisioned in the cloud: the old credential stays refused, the new one works once the edge has it", async () => {
      const oldSecret = secrets.get("again");
      cloudCredentials.revoke({ type: "thermostat", id: "again" });
      await eventually(
        () => (edge.revocations?.record(device("again")) ? true : undefined),
        "the edge learnt the revocation",
        60_000,
      );
      const fresh = cloudCredentials.provision({ type: "thermostat", id: "again" }).password;
      await eventually(
        () => (edge.revocations?.record(device("again"))?.reprovisionedAt ? true : undefined),
        "the edge learnt the re-provisioning",
        60_000,
      );
      // The edge's file still holds the old credential: the cloud revoked it, so no resurrection.
      await expect(connectAtEdge("again", oldSecret)).rejects.toThrow(/Authorization Violation/);
      copyFileSync(cloudFile, edgeFile); // the operator redistributes the cloud's file
      (await connectAtEdge("again", fresh)).close();
      await expect(connectAtEdge("again", oldSecret)).rejects.toThrow(/Authorization Violation/);
    });

    it("the hub's stream deleted and made again: the cloud fills it again and the edge copies it from its start", async () => {
      const jsm = await jetstreamManager(hubNc);
      await jsm.streams.delete(REVOCATIONS_STREAM);
      // The cloud node makes the stream again with every record its file calls for (fewer than
      // the old stream's sequences: the edge's last copied sequence is beyond the new stream's end).
      await eventually(
        async () => ((await hubRecord("up"))?.["revokedAt"] !== undefined ? true : undefined),
        "the cloud published its records into the new stream",
        60_000,
      );
      const nc = await connectAtEdge("anew");
      const closed = nc.closed();
      cloudCredentials.revoke({ type: "thermostat", id: "anew" });
      await closed; // the new stream's record reached the edge and kicked the device
      await expect(connectAtEdge("anew")).rejects.toThrow(/Authorization Violation/);
      expect(edge.revocations?.record(device("anew"))).toBeDefined();
    });

    it("revoked in the cloud while the edge node was down: the device connected since before its restart is kicked once it copied the revocation", async () => {
      const nc = await connectAtEdge("down");
      const closed = nc.closed();
      await edge.stop();
      await revokeInCloud("down");
      await nc.flush(); // the leaf server kept the device connected while no edge node ran
      edge = await startEdge();
      await closed;
      expect(edge.revocations?.record(device("down"))).toBeDefined();
      await expect(connectAtEdge("down")).rejects.toThrow(/Authorization Violation/);
    });

    // Which of the edge node's two kicks catches the device above depends on when its first copy
    // lands: after its callout started, the record's arrival kicks it; before, the kick at start
    // does. This pins the kick at start: the copy holds the record before the edge node starts.
    it("the edge's copy already holds the revocation when the edge node starts: the devices still connected are kicked at start", async () => {
      const connections = [await connectAtEdge("copied"), await connectAtEdge("copied")];
      const closed = Promise.all(connections.map((nc) => nc.closed()));
      await edge.stop();
      await revokeInCloud("copied");
      // Copied into the edge's stream with no callout running (as between an edge node reading its
      // copy and starting its callout, or by a run stopped before it kicked): nothing kicks on the way in.
      const leaf = await connectAsEdgeNode();
      const copier = await EdgeRevocations.start({ connection: leaf, edge: EDGE, logger: silentLogger() });
      await eventually(
        async () => {
          await copier.copy(5_000);
          return edgeCopyHolds(leaf, "copied");
        },
        "the revocation copied into the edge's stream",
        60_000,
      );
      await copier.stop();
      for (const nc of connections) await nc.flush(); // still connected
      edge = await startEdge();
      await closed;
      expect(edge.deviceAuth?.stats.kicked).toBe(2);
      expect(edge.revocations?.stats.kicked).toBe(1);
      await expect(connectAtEdge("copied")).rejects.toThrow(/Authorization Violation/);
    });

    it("kickRevoked() disconnects each device whose edge credential a record refuses and returns how many connections it kicked", async () => {
      const revocations = await EdgeRevocations.start({
        connection: await connectAsEdgeNode(),
        edge: EDGE,
        logger: silentLogger(),
      });
      try {
        const asked: string[] = [];
        // Two connections of 'copied', one of each other device (the leaf server's answer, stood in for).
        revocations.kickWith(new DeviceCredentials(edgeFile), async (name) => {
          asked.push(name);
          return name === device("copied") ? 2 : 1;
        });
        const kicked = await revocations.kickRevoked();
        expect(asked).toEqual(expect.arrayContaining(["up", "outage", "down", "copied"].map(device)));
        // 'again' was re-provisioned after its revocation and the edge's file holds the new credential.
        expect(revocations.record(device("again"))?.reprovisionedAt).toBeDefined();
        expect(asked).not.toContain(device("again"));
        expect(asked).not.toContain(device("stays")); // never revoked
        expect(kicked).toBe(asked.length + 1);
        expect(revocations.stats.kicked).toBe(asked.length);
      } finally {
        await revocations.stop();
      }
    });
  },
);
