import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { DeviceClient } from "doppel/device";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import { DoppelClient, type RemoteEvent } from "../../../runtime/grpc/client.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { doppel, startNode, stopNode } from "../../cli/doppel-process.ts";
import { eventually } from "../../support/eventually.ts";
import {
  cloudNodeConfig,
  edgeDeviceAuth,
  LEAF_USER,
  type LinkRelay,
  type NatsProcess,
  startHub,
  startLeafFromConfig,
  startRelay,
} from "./edge-servers.ts";

const EDGE = "plant-k";
const boiler: TwinRef = { type: "thermostat", id: "k1" };

async function historyOf(client: DoppelClient, ref: TwinRef): Promise<RemoteEvent[]> {
  const events: RemoteEvent[] = [];
  for await (const event of client.history(ref)) events.push(event);
  return events;
}

/**
 * The operator's path for device credentials at a thick edge, each step the real command: the
 * edge node's configuration (with `nats.deviceAuth`) is written once; `doppel edge leaf-config
 * --config` writes the leaf server's configuration from it (accounts, callout, the leaf remote);
 * `doppel devices provision` issues the device's credential into the edge's file; `doppel start
 * --config` runs the thick edge (`edge.twins`), whose node answers the leaf server's callout. A
 * provisioned device reports at the edge (its events record it as principal, in the cloud too);
 * a wrong password is refused; with the leaf link cut it still authenticates and is served;
 * `doppel devices revoke` at the edge disconnects it.
 */
describe("thick edge from the CLI with device credentials checked at the edge", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let cloud: DoppelNode;
  let edgeProcess: { child: ChildProcess; address: string; output: () => string } | undefined;
  let edge: DoppelClient;
  let credentialsFile: string;
  let password: string;
  let mqttUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "doppel-edge-auth-start-"));
    hub = await startHub(dir);
    relay = await startRelay(hub.leafPort);
    credentialsFile = join(dir, "edge-device-credentials.json");
    const auth = edgeDeviceAuth(credentialsFile);
    const [leafPort, mqttPort] = [await freePort(), await freePort()];
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    const configFile = join(dir, "edge.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: join(dir, "edge-data"),
        store: { kind: "sqlite" },
        nats: { servers: `nats://127.0.0.1:${leafPort}`, ...auth.nats },
        edge: { name: EDGE, hubDomain: "cloud", twins: ["thermostat"], tick: "200ms" },
      }),
    );
    const upstream = new URL(relay.url);
    upstream.username = LEAF_USER.user;
    upstream.password = LEAF_USER.pass;
    const leafConfig = await doppel([
      "edge",
      "leaf-config",
      "--config",
      configFile,
      "--upstream",
      upstream.toString(),
      "--listen",
      `127.0.0.1:${leafPort}`,
      "--mqtt",
      `127.0.0.1:${mqttPort}`,
      "--store-dir",
      join(dir, "leaf-js"),
    ]);
    expect(leafConfig.stderr).toBe("");
    expect(leafConfig.code).toBe(0);
    leaf = await startLeafFromConfig(dir, EDGE, leafConfig.stdout, leafPort);
    const issued = await doppel([
      "devices",
      "provision",
      `${boiler.type}/${boiler.id}`,
      "--credentials-file",
      credentialsFile,
      "--json",
    ]);
    expect(issued.code).toBe(0);
    password = (JSON.parse(issued.stdout) as { password: string }).password;
    cloud = await DoppelNode.start(cloudNodeConfig("cloud", hub), {
      twins: [Thermostat, Pump],
      store: new MemoryEventStore(),
      logger: silentLogger(),
    });
    edgeProcess = await startNode(["--config", configFile]);
    edge = new DoppelClient(edgeProcess.address, { timeoutMs: 30_000 });
  }, 300_000);
  afterAll(async () => {
    edge?.close();
    if (edgeProcess) await stopNode(edgeProcess.child);
    await cloud?.stop();
    await leaf?.stop();
    await relay?.stop();
    await hub?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const connectBoiler = () =>
    DeviceClient.connect({
      servers: leaf.url,
      credentials: { user: `${boiler.type}/${boiler.id}`, pass: password },
      ...boiler,
      ackTimeoutMs: 10_000,
      waitOnFirstConnect: false,
    });

  it("the start output says devices are checked at the edge", () => {
    expect(edgeProcess?.output()).toContain(
      `devices credentials checked here (the leaf server's auth callout; ${credentialsFile})`,
    );
  });

  it("a provisioned device reports at the edge; its events name it, at the edge and in the cloud", async () => {
    const device = await connectBoiler();
    try {
      await device.report({ temperature: 19 });
    } finally {
      await device.close();
    }
    const atEdge = await eventually(
      async () => {
        const events = await historyOf(edge, boiler).catch(() => []);
        return events.find((e) => e.type === "$reported");
      },
      "the report in the edge twin's log",
      60_000,
    );
    expect(atEdge.principal).toBe("device:thermostat/k1");
    // Replicated: the cloud's copy has the same event, principal included.
    const inCloud = await eventually(
      async () => {
        const events = await cloud.twins.history(boiler, { limit: 100 }).catch(() => []);
        return events.find((e) => e.type === "$reported");
      },
      "the report replicated to the cloud",
      120_000,
    );
    expect(inCloud.principal).toBe("device:thermostat/k1");
  });

  it("over MQTT the same credential reports for its own twin only; a wrong password is refused", async () => {
    const mq = await mqtt.connectAsync(mqttUrl, {
      clientId: "edge-k1",
      username: "thermostat/k1",
      password,
      clean: true,
      reconnectPeriod: 0,
    });
    try {
      await expect(mq.subscribeAsync("doppel/dev/thermostat/other/cmd", { qos: 1 })).rejects.toThrow(
        /Subscribe error/,
      );
      await mq.publishAsync("doppel/dev/thermostat/k1/reported", JSON.stringify({ temperature: 22 }), {
        qos: 1,
      });
      await eventually(
        async () =>
          (await edge.getTwin(boiler).catch(() => undefined))?.reported["temperature"] === 22
            ? true
            : undefined,
        "the MQTT report in the edge twin",
        60_000,
      );
    } finally {
      await mq.endAsync(true);
    }
    await expect(
      mqtt.connectAsync(mqttUrl, {
        clientId: "edge-bad",
        username: "thermostat/k1",
        password: "dpd_wrong",
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      }),
    ).rejects.toThrow(/Not authorized|Bad User Name or Password|refused/i);
  });

  it("a wrong password is refused at the edge", async () => {
    await expect(
      connect({
        servers: leaf.url,
        user: "thermostat/k1",
        pass: "dpd_wrong",
        maxReconnectAttempts: 0,
        timeout: 10_000,
      }),
    ).rejects.toThrow(/Authorization Violation/);
  });

  it("with the leaf link cut the device authenticates and the edge twin serves it", async () => {
    await relay.cut();
    try {
      // The cloud cannot reach the edge: its command for the edge twin fails fast.
      await eventually(
        async () =>
          (await cloud.twins.invoke(boiler, "setTarget", { celsius: 21 }).then(
            () => undefined,
            (error: { code?: string }) => (error.code === "UNAVAILABLE" ? true : undefined),
          )) ?? undefined,
        "the cloud sees the edge unreachable",
        60_000,
      );
      const device = await connectBoiler();
      try {
        await device.report({ temperature: 25 });
        // The ack means stored at the edge; the edge twin applies it and answers sync there, link cut.
        await eventually(
          async () => ((await device.sync()).reported["temperature"] === 25 ? true : undefined),
          "the edge twin applied the report made during the outage",
          60_000,
        );
      } finally {
        await device.close();
      }
    } finally {
      await relay.restore();
    }
  });

  it("doppel devices revoke at the edge disconnects the device, which cannot come back", async () => {
    const nc = await connect({
      servers: leaf.url,
      user: "thermostat/k1",
      pass: password,
      maxReconnectAttempts: 0,
      timeout: 10_000,
    });
    const closed = nc.closed();
    const revoked = await doppel([
      "devices",
      "revoke",
      "thermostat/k1",
      "--credentials-file",
      credentialsFile,
    ]);
    expect(revoked.code).toBe(0);
    await closed;
    await expect(
      connect({ servers: leaf.url, user: "thermostat/k1", pass: password, maxReconnectAttempts: 0 }),
    ).rejects.toThrow(/Authorization Violation/);
  });
});
