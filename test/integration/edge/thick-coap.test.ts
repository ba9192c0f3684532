import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DoppelNode, EdgeNode } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { coapRequest } from "../coap/coap-device.ts";
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

const EDGE = "plant-tc";
const PUMP = { type: "pump", id: "tc-p1" };
const THERMOSTAT = { type: "thermostat", id: "tc-t1" };

/**
 * CoAP at a thick edge: thermostats run at the edge (`edge.twins`), pumps in the cloud. The thick
 * edge's node serves the one CoAP listener; a pump (a forwarded type) reports over CoAP at the edge
 * as it would over NATS: `2.04` once the edge stream holds the report, during a leaf-link outage
 * too, and the cloud twin gets it when the link is back. A thermostat's report goes to the edge's
 * own twin. Real hub and leaf nats-servers (the link through a relay the test cuts), node-coap
 * clients in other processes (coap/fixtures/coap-device.mjs).
 */
describe("CoAP devices at a thick edge", () => {
  let servers: EdgeServers;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  let coap: string;
  const tokens = new Map<string, string>();
  const report = (ref: { type: string; id: string }, patch: object) =>
    coapRequest(coap, "POST", `/v1/${ref.type}/${ref.id}/reported?token=${tokens.get(ref.id)}`, {
      payload: patch,
    });
  const cloudPressure = async () =>
    (await cloud.twins.get(PUMP).catch(() => undefined))?.reported["pressureBar"];

  beforeAll(async () => {
    servers = await startEdgeServers("thick-coap", EDGE);
    const dataDir = join(servers.dir, "edge-data");
    mkdirSync(dataDir);
    const credentials = new DeviceCredentials(join(dataDir, "device-credentials.json"));
    for (const ref of [PUMP, THERMOSTAT]) tokens.set(ref.id, credentials.provision(ref).password);
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-tc", servers.hub), {
      twins: [Thermostat, Pump],
      logger: silentLogger(),
    });
    edge = await EdgeNode.start(
      edgeNodeConfig(
        "edge-tc",
        servers.leaf,
        { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms", twins: ["thermostat"] },
        {
          dataDir,
          store: { kind: "sqlite", path: join(servers.dir, "edge.db") },
          shards: 4,
          coap: { listen: "127.0.0.1:0", requireCredentials: true },
          limits: { deviceRate: { ratePerSecond: 1000, burst: 1000 } },
        },
      ),
      { logger: silentLogger(), twins: [Thermostat, Pump] },
    );
    coap = edge.coap!.address;
  }, 180_000);
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers(servers ?? {});
  });

  it("a forwarded type's report is 2.04 at the edge, during an outage too, and reaches its cloud twin", async () => {
    await linkUp(edge);
    expect((await report(PUMP, { running: true, pressureBar: 2.5 })).code).toBe("2.04");
    await eventually(
      async () => ((await cloudPressure()) === 2.5 ? true : undefined),
      "the pump's report in the cloud",
      60_000,
    );

    await cutLink(servers.relay, edge);
    expect((await report(PUMP, { pressureBar: 3.5 })).code).toBe("2.04");
    await eventually(
      () => (edge.status.backlog >= 1 ? true : undefined),
      "the report held at the edge",
      30_000,
    );
    expect(await cloudPressure()).toBe(2.5);
    await restoreLink(servers.relay, edge);
    await eventually(
      async () => ((await cloudPressure()) === 3.5 ? true : undefined),
      "the outage's report in the cloud",
      120_000,
    );
    // The edge runs no pump: the report was forwarded, not applied at the edge.
    await expect(edge.thick!.node.twins.get(PUMP)).rejects.toMatchObject({
      code: "NOT_FOUND",
      message: expect.stringContaining("unknown twin type 'pump'"),
    });
  }, 300_000);

  it("an edge type's report goes to the edge's twin; a type no module has is still 4.04", async () => {
    expect((await report(THERMOSTAT, { temperature: 18.5 })).code).toBe("2.04");
    await eventually(
      async () =>
        (await edge.thick!.node.twins.get(THERMOSTAT).catch(() => undefined))?.reported["temperature"] ===
        18.5
          ? true
          : undefined,
      "the thermostat's report in the edge's twin",
      60_000,
    );
    const unknown = await coapRequest(coap, "POST", `/v1/boiler/b1/reported?token=${tokens.get(PUMP.id)}`, {
      payload: { x: 1 },
    });
    expect(unknown.code).toBe("4.04");
    // Each report charged once to its device's rate; none left waiting for an ingress that never
    // takes it (the pumps' went to the edge stream, the thermostat's was taken by the node's ingress).
    expect(edge.thick!.node.devices.deviceRate?.prepaid).toBe(0);
  });
});
