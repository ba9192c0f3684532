import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { DoppelNode, EdgeNode, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { coapObserve, coapRequest, packet, path, RawPeer, readDatagram } from "../coap/coap-device.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  type EdgeServers,
  edgeNodeConfig,
  HUB_DOMAIN,
  linkUp,
  restoreLink,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-c";
const ID = "c-e1";

/**
 * CoAP devices at a thin edge: the edge node serves the CoAP listener (`coap` in its
 * configuration) on hub and leaf nats-servers with the leaf link through a relay the test cuts.
 * The devices are node-coap clients in other processes (coap/fixtures/coap-device.mjs): a
 * confirmable report is acknowledged 2.04 at the edge while the link is cut and reaches the cloud
 * twin after it returns; `GET desired` with Observe gets the desired changes made in the cloud,
 * also one made during an outage (the edge node's resync); malformed CoAP gets CoAP error codes
 * and the edge keeps serving.
 */
describe("CoAP devices at a thin edge", () => {
  let servers: EdgeServers;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  let coap: string;
  let token: string;
  let wire: NatsTransport;
  const ref = { type: "thermostat", id: ID };
  const q = () => `?token=${token}`;

  beforeAll(async () => {
    servers = await startEdgeServers("coap", EDGE);
    const dataDir = join(servers.dir, "edge-data");
    mkdirSync(dataDir);
    // The edge's own credentials file (`doppel devices provision --data <edge data>`).
    token = new DeviceCredentials(join(dataDir, "device-credentials.json")).provision(ref).password;
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-c", servers.hub), {
      twins: [Thermostat],
      logger: silentLogger(),
    });
    edge = await EdgeNode.start(
      edgeNodeConfig(
        "edge-c",
        servers.leaf,
        { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms" },
        { dataDir, coap: { listen: "127.0.0.1:0", requireCredentials: true } },
      ),
      { logger: silentLogger(), twins: [Thermostat] },
    );
    coap = edge.coap!.address;
    wire = await NatsTransport.connect({ servers: servers.leaf.url, name: "coap-edge-test" });
  });
  afterAll(async () => {
    await wire?.close();
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers(servers ?? {});
  });

  /** The temperatures of the reports the cloud twin applied, in order. */
  const applied = async () =>
    (await cloud.twins.history(ref, { limit: 10_000 }))
      .filter((e) => e.type === "$reported")
      .map((e) => (e.data["patch"] as { temperature?: unknown }).temperature);
  const report = (seq: number, temperature: number) =>
    coapRequest(coap, "POST", `/v1/thermostat/${ID}/reported${q()}&seq=${seq}`, { payload: { temperature } });

  it("acknowledges a confirmable report 2.04 at the edge while the link is cut; the cloud twin gets it after", async () => {
    await linkUp(edge);
    expect((await report(1, 11)).code).toBe("2.04");
    await eventually(
      async () => ((await applied()).at(-1) === 11 ? true : undefined),
      "the first report",
      60_000,
    );

    await cutLink(servers.relay, edge);
    for (let seq = 2; seq <= 6; seq++) expect((await report(seq, 10 + seq)).code).toBe("2.04");
    // Telemetry is stored in the edge's raw stream: 2.01 during the outage too.
    const jsm = await jetstreamManager(wire.connection);
    const rawBefore = (await jsm.streams.info("DOPPEL_EDGE_RAW")).state.last_seq;
    const telemetry = await coapRequest(coap, "POST", `/v1/thermostat/${ID}/telemetry${q()}`, {
      format: "cbor",
      payload: { metrics: { temperature: 16.5 } },
    });
    expect(telemetry.code).toBe("2.01");
    expect((await jsm.streams.info("DOPPEL_EDGE_RAW")).state.last_seq).toBe(rawBefore + 1);
    // Held at the edge while the link is down.
    await eventually(
      () => (edge.status.backlog >= 5 ? true : undefined),
      "the reports held at the edge",
      30_000,
    );
    expect(await applied()).toEqual([11]);

    await restoreLink(servers.relay, edge);
    await eventually(
      async () => ((await applied()).length === 6 ? true : undefined),
      "every acknowledged report in the cloud twin",
      120_000,
    );
    expect(await applied()).toEqual([11, 12, 13, 14, 15, 16]);
    expect(edge.coap!.stats.stored).toBeGreaterThanOrEqual(7);
  }, 300_000);

  it("GET desired with Observe: the cloud's state first, then changes made in the cloud, one during an outage", async () => {
    await linkUp(edge);
    const observer = coapObserve(coap, `/v1/thermostat/${ID}/desired${q()}`);
    try {
      const first = await eventually(() => observer.lines[0], "the first notification", 60_000);
      expect(first.code).toBe("2.05");
      const heating = !(first.payload as { desired: { heating?: boolean } }).desired.heating;
      const updated = await cloud.twins.updateDesired(ref, { heating });
      const pushed = await eventually(
        () => observer.lines.find((l) => (l.payload as { version?: number }).version === updated.version),
        "the desired push across the leaf link",
        60_000,
      );
      expect(pushed).toMatchObject({ code: "2.05", payload: { desired: { heating } } });

      await cutLink(servers.relay, edge);
      // The cloud cannot be asked while the link is down: a plain GET is 5.03.
      const get = await coapRequest(coap, "GET", `/v1/thermostat/${ID}/desired${q()}`, { format: "none" });
      expect(get.code).toBe("5.03");
      const during = await cloud.twins.updateDesired(ref, { heating: !heating });
      await restoreLink(servers.relay, edge);
      const resent = await eventually(
        () => observer.lines.find((l) => (l.payload as { version?: number }).version === during.version),
        "the change made during the outage, pushed by the edge's resync",
        90_000,
      );
      expect(resent).toMatchObject({ code: "2.05", payload: { desired: { heating: !heating } } });
    } finally {
      await observer.close();
    }
    expect(edge.coap!.observers).toBe(0);
  }, 300_000);

  it("answers malformed CoAP with CoAP error codes and keeps serving", async () => {
    const raw = await RawPeer.open();
    try {
      const reportPath = [
        ...path("v1", "thermostat", ID, "reported"),
        { name: "Uri-Query", value: Buffer.from(`token=${token}`) },
      ];
      const body = Buffer.from(JSON.stringify({ temperature: 21 }));
      const cases: [number, Buffer, string][] = [
        [2001, packet(2001, reportPath, Buffer.from("{temperature: 21")), "4.00"], // not JSON
        [2002, packet(2002, [...reportPath, { name: "65001", value: Buffer.from("x") }], body), "4.02"],
        [2003, Buffer.from([0x49, 0x02, 0x07, 0xd3, 1, 2]), "0.00"], // token length 9: a Reset
        [2004, packet(2004, path("v1", "thermostat", ID, "reported"), body), "4.01"], // no credential
      ];
      for (const [, datagram] of cases) raw.send(coap, datagram);
      for (const [messageId, , code] of cases) {
        const reply = await eventually(() => raw.replies(messageId)[0], `a reply to ${messageId}`, 30_000);
        expect({ messageId, code: readDatagram(reply).code }).toEqual({ messageId, code });
      }
      for (let i = 0; i < 200; i++) raw.send(coap, Buffer.from([0x40 | (i % 16), i, i, 0xff, i]));
      const invalid = await coapRequest(coap, "POST", `/v1/thermostat/${ID}/reported${q()}`, {
        payload: { temperature: "hot" },
      });
      expect(invalid.code).toBe("4.00");
      const unknown = await coapRequest(coap, "POST", `/v1/boiler/${ID}/reported${q()}`, { payload: {} });
      expect(unknown.code).toBe("4.04");
    } finally {
      await raw.close();
    }
    // Still serving: a real client's report is acknowledged and reaches the cloud.
    expect(edge.coap!.stats.screened).toBeGreaterThan(0);
    expect((await report(7, 17)).code).toBe("2.04");
    await eventually(
      async () => ((await applied()).at(-1) === 17 ? true : undefined),
      "the report after",
      60_000,
    );
  }, 300_000);
});
