import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DeviceClient } from "doppel/device";
import { DoppelNode, EdgeNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RefusalReason } from "../../../runtime/devices/auth/auth-callout.ts";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { coapRequest } from "../coap/coap-device.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  edgeDeviceAuth,
  edgeNodeConfig,
  HUB_DOMAIN,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  restoreLink,
  startEdgeServers,
  stopEdgeServers,
} from "./edge-servers.ts";

const EDGE = "plant-auth";

/**
 * Device credentials at the edge: the leaf server (written by `leafServerConfig({ deviceAuth })`)
 * sends every device to the edge node's auth callout, which checks the edge's own credentials
 * file. A provisioned device reports at the edge and its cloud twin gets the report; bad
 * credentials are refused; the device gets only its own subjects (not another twin's, not the
 * edge's RPC nor node subjects); it authenticates and reports with the leaf link cut; a device
 * revoked in the edge's file is disconnected from the leaf server. The edge's CoAP listener checks
 * credentials against the same file (through the callout's reader).
 */
describe("thin edge: devices authenticate at the edge through its auth callout", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edge: EdgeNode;
  let credentials: DeviceCredentials;
  const secrets = new Map<string, string>();
  const open: NatsConnection[] = [];

  function provision(id: string): void {
    secrets.set(id, credentials.provision({ type: "thermostat", id }).password);
  }

  /** A plain NATS client at the edge (no Doppel code); the errors the server sends are collected. */
  async function rawConnect(user: string, pass: string | undefined) {
    const nc = await connect({
      servers: leaf.url,
      user,
      ...(pass === undefined ? {} : { pass }),
      maxReconnectAttempts: 0,
      timeout: 10_000,
    });
    open.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "error") errors.push(String(status.error?.message ?? status.error));
      }
    })();
    return { nc, errors };
  }

  const connectDevice = (id: string) =>
    DeviceClient.connect({
      servers: leaf.url,
      credentials: { user: `thermostat/${id}`, pass: secrets.get(id) as string },
      type: "thermostat",
      id,
      ackTimeoutMs: 10_000,
      waitOnFirstConnect: false,
    });

  const cloudTemperature = async (id: string) =>
    (await cloud.twins.get({ type: "thermostat", id }).catch(() => undefined))?.reported["temperature"];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "doppel-edge-auth-"));
    const file = join(dir, "edge-device-credentials.json");
    credentials = new DeviceCredentials(file);
    for (const id of ["e1", "e2", "outage", "gone", "coap"]) provision(id);
    const auth = edgeDeviceAuth(file);
    ({ hub, relay, leaf } = await startEdgeServers("auth", EDGE, { dir, deviceAuth: auth.leaf }));
    cloud = await DoppelNode.start(cloudNodeConfig("cloud", hub), {
      twins: [Thermostat, Pump],
      store: new MemoryEventStore(),
      logger: silentLogger(),
    });
    edge = await EdgeNode.start(
      edgeNodeConfig(
        "edge",
        leaf,
        { name: EDGE, hubDomain: HUB_DOMAIN, tick: "200ms" },
        { nats: auth.nats, coap: { listen: "127.0.0.1:0" } },
      ),
      { logger: silentLogger(), twins: [Thermostat, Pump] },
    );
    await linkUp(edge);
  });
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
    await edge?.stop();
    await cloud?.stop();
    await stopEdgeServers({ dir, hub, relay, leaf });
  });

  it("a provisioned device reports at the edge; the report reaches its cloud twin", async () => {
    const device = await connectDevice("e1");
    try {
      await device.report({ temperature: 20 });
      await eventually(
        async () => ((await cloudTemperature("e1")) === 20 ? true : undefined),
        "e1's report in its cloud twin",
        60_000,
      );
      // sync crosses the link to the cloud twin and comes back on the device's own inbox.
      expect((await device.sync()).reported).toEqual({ temperature: 20 });
    } finally {
      await device.close();
    }
    expect(edge.deviceAuth?.stats.allowed).toBeGreaterThanOrEqual(1);
  });

  it("a wrong password and an unknown device are refused", async () => {
    const refusals = () => ({ ...(edge.deviceAuth?.stats.refused as Record<RefusalReason, number>) });
    const before = refusals();
    await expect(rawConnect("thermostat/e1", "dpd_wrong")).rejects.toThrow(/Authorization Violation/);
    await expect(rawConnect("thermostat/nobody", secrets.get("e1"))).rejects.toThrow(
      /Authorization Violation/,
    );
    await expect(rawConnect("thermostat/e1", undefined)).rejects.toThrow(/Authorization Violation/);
    const after = refusals();
    const grew = (reason: RefusalReason) => after[reason] - before[reason];
    expect(grew("wrong-secret")).toBe(1);
    expect(grew("unknown")).toBe(1);
    const total = (counts: Record<string, number>) => Object.values(counts).reduce((n, c) => n + c, 0);
    expect(total(after) - total(before)).toBe(3);
  });

  it("a device cannot publish another twin's subjects, the edge's RPC or node subjects", async () => {
    const { nc, errors } = await rawConnect("thermostat/e1", secrets.get("e1"));
    const forged = new TextEncoder().encode(JSON.stringify({ temperature: 99 }));
    const subjects = [
      "doppel.dev.thermostat.e2.reported",
      `doppel.edge.${EDGE}.rpc`,
      "doppel.node.cloud.rpc",
      "doppel.changes.thermostat.e2",
      `$JS.${HUB_DOMAIN}.API.STREAM.DELETE.DOPPEL_INGRESS`,
    ];
    for (const subject of subjects) nc.publish(subject, forged);
    const sub = nc.subscribe("doppel.node.>");
    await nc.flush();
    await eventually(
      () => (errors.length >= subjects.length + 1 ? true : undefined),
      "a violation for each",
      30_000,
    );
    for (const subject of subjects)
      expect(errors.some((e) => e.includes("Permissions Violation for Publish") && e.includes(subject))).toBe(
        true,
      );
    expect(
      errors.some((e) => e.includes("Permissions Violation for Subscription") && e.includes("doppel.node.>")),
    ).toBe(true);
    sub.unsubscribe();
    // e1's own report after the forged ones reaches the cloud; e2's twin was never touched.
    nc.publish("doppel.dev.thermostat.e1.reported", new TextEncoder().encode('{"temperature":21}'));
    await eventually(
      async () => ((await cloudTemperature("e1")) === 21 ? true : undefined),
      "e1's own report in the cloud",
      60_000,
    );
    expect(await cloud.twins.get({ type: "thermostat", id: "e2" }).catch(() => "none")).toBe("none");
  });

  it("with the leaf link cut a device still authenticates and reports at the edge", async () => {
    await cutLink(relay, edge);
    const device = await connectDevice("outage");
    try {
      // The ack comes from the edge's stream: the cloud is unreachable.
      await device.report({ temperature: 30 });
      await device.report({ temperature: 31 });
      expect(edge.status.linkUp).toBe(false);
    } finally {
      await device.close();
    }
    await restoreLink(relay, edge);
    await eventually(
      async () => ((await cloudTemperature("outage")) === 31 ? true : undefined),
      "the outage's reports in the cloud after the link returned",
      120_000,
    );
  });

  it("a device revoked at the edge is disconnected and cannot reconnect", async () => {
    const { nc } = await rawConnect("thermostat/gone", secrets.get("gone"));
    const closed = nc.closed();
    credentials.revoke({ type: "thermostat", id: "gone" });
    await closed; // kicked by the edge node through the leaf server's system account
    await expect(rawConnect("thermostat/gone", secrets.get("gone"))).rejects.toThrow(
      /Authorization Violation/,
    );
    expect(edge.deviceAuth?.stats.kicked).toBeGreaterThanOrEqual(1);
    expect(edge.deviceAuth?.stats.refused.revoked).toBeGreaterThanOrEqual(1);
  });

  it("CoAP at the edge checks the file the callout reads: a provisioned device's report is 2.04, once revoked 4.03", async () => {
    const report = (id: string, temperature: number) =>
      coapRequest(edge.coap!.address, "POST", `/v1/thermostat/${id}/reported?token=${secrets.get(id)}`, {
        payload: { temperature },
      });
    expect((await report("coap", 19)).code).toBe("2.04");
    await eventually(
      async () => ((await cloudTemperature("coap")) === 19 ? true : undefined),
      "the CoAP report in its cloud twin",
      60_000,
    );
    credentials.revoke({ type: "thermostat", id: "coap" });
    const refused = await report("coap", 20);
    expect(refused).toMatchObject({ code: "4.03" });
    await expect(rawConnect("thermostat/coap", secrets.get("coap"))).rejects.toThrow(
      /Authorization Violation/,
    );
  });
});
