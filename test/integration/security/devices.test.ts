import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeUser } from "@nats-io/jwt";
import { createAccount, createUser } from "@nats-io/nkeys";
import { connect, jwtAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { DeviceClient } from "../../../runtime/devices/client/device-client.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
import { type SecuredNats, startSecuredNats } from "./secured-nats.ts";

/**
 * Device credentials against a real nats-server whose auth callout is the Doppel node: each
 * device sees exactly its own subjects, over NATS and over MQTT; revoked devices are cut off; bad
 * credentials of every shape are refused and the node keeps serving.
 */
describe("device credentials through the NATS auth callout", () => {
  let nats: SecuredNats;
  let dir: string;
  let credentials: DeviceCredentials;
  let node: DoppelNode;
  let client: DoppelClient;
  const secrets = new Map<string, string>();
  const open: NatsConnection[] = [];

  function provision(device: string): string {
    const [type, id] = device.split("/") as [string, string];
    const issued = credentials.provision({ type, id });
    secrets.set(device, issued.password);
    return issued.password;
  }

  /** A plain NATS client (no Doppel code) with the given options; errors the server sends are collected. */
  async function rawConnect(options: Parameters<typeof connect>[0]) {
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: 0, timeout: 10_000, ...options });
    open.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "error") errors.push(String(status.error?.message ?? status.error));
      }
    })();
    return { nc, errors };
  }

  async function twinVersion(type: string, id: string): Promise<number> {
    try {
      return (await client.getTwin({ type, id })).version;
    } catch {
      return 0;
    }
  }

  beforeAll(async () => {
    nats = await startSecuredNats();
    dir = mkdtempSync(join(tmpdir(), "doppel-secdev-"));
    credentials = new DeviceCredentials(join(dir, "device-credentials.json"));
    provision("thermostat/a1");
    provision("thermostat/b1");
    provision("thermostat/r1");
    provision("thermostat/flood");
    provision("thermostat/calm");
    node = await DoppelNode.start(
      {
        nodeId: "secured",
        dataDir: dir,
        store: { kind: "memory" },
        grpc: { listen: "127.0.0.1:0" },
        metrics: { listen: "127.0.0.1:0" },
        shards: 4,
        log: { level: "silent" },
        // A bucket that does not refill within the test: 20 messages per device, then refused.
        limits: { deviceRate: { ratePerSecond: 0.001, burst: 20 } },
        nats: {
          servers: nats.url,
          credentials: nats.node,
          stream: { maxBytes: 64 * 1024 * 1024 },
          deviceAuth: {
            issuerSeed: nats.issuerSeed,
            account: nats.account,
            credentials: nats.auth,
            system: nats.system,
            revocationPoll: "50ms",
          },
        },
      },
      { twins: [Thermostat, Pump], store: new MemoryEventStore(), logger: silentLogger() },
    );
    client = new DoppelClient(node.grpcAddress as string, { timeoutMs: 15_000 });
  });

  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => undefined);
    client?.close();
    await node?.stop();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a provisioned device reports over NATS and its twin changes", async () => {
    const device = await DeviceClient.connect({
      servers: nats.url,
      credentials: { user: "thermostat/a1", pass: secrets.get("thermostat/a1") as string },
      type: "thermostat",
      id: "a1",
      waitOnFirstConnect: false,
    });
    try {
      await device.report({ temperature: 20 });
      await eventually(
        async () => ((await twinVersion("thermostat", "a1")) > 0 ? true : undefined),
        "a1 applied",
      );
      const synced = await device.sync();
      expect(synced.reported).toEqual({ temperature: 20 });
      // The audit trail names the device on the events its report caused.
      const events = [];
      for await (const event of client.history({ type: "thermostat", id: "a1" })) events.push(event);
      expect(events.find((e) => e.type === "$reported")?.principal).toBe("device:thermostat/a1");
    } finally {
      await device.close();
    }
  });

  it("device A cannot publish on device B's subjects nor on node subjects; B's twin is unchanged", async () => {
    const { nc, errors } = await rawConnect({ user: "thermostat/a1", pass: secrets.get("thermostat/a1") });
    const forged = new TextEncoder().encode(JSON.stringify({ temperature: 99 }));
    nc.publish("doppel.dev.thermostat.b1.reported", forged);
    nc.publish("doppel.node.secured.rpc", forged);
    nc.publish("doppel.edge.plant-a.rpc", forged);
    nc.publish("doppel.changes.thermostat.b1", forged);
    nc.publish("DOPPEL_INGRESS", forged);
    nc.publish("$JS.API.STREAM.DELETE.DOPPEL_INGRESS", forged);
    await eventually(() => (errors.length >= 6 ? true : undefined), "six permission violations");
    for (const subject of [
      "doppel.dev.thermostat.b1.reported",
      "doppel.node.secured.rpc",
      "doppel.edge.plant-a.rpc",
      "doppel.changes.thermostat.b1",
      "$JS.API.STREAM.DELETE.DOPPEL_INGRESS",
    ]) {
      expect(errors.some((e) => e.includes("Permissions Violation for Publish") && e.includes(subject))).toBe(
        true,
      );
    }
    // A's own report after the forged ones is applied: B's twin was never touched.
    nc.publish(
      "doppel.dev.thermostat.a1.reported",
      new TextEncoder().encode(JSON.stringify({ temperature: 21 })),
    );
    await eventually(
      async () =>
        (await client.getTwin({ type: "thermostat", id: "a1" })).reported["temperature"] === 21
          ? true
          : undefined,
      "a1's own report",
    );
    expect(await twinVersion("thermostat", "b1")).toBe(0);
  });

  it("device A cannot subscribe to device B's commands", async () => {
    const { nc, errors } = await rawConnect({ user: "thermostat/a1", pass: secrets.get("thermostat/a1") });
    const sub = nc.subscribe("doppel.dev.thermostat.b1.cmd");
    const wildcard = nc.subscribe("doppel.dev.>");
    await nc.flush();
    await eventually(() => (errors.length >= 2 ? true : undefined), "two subscription violations");
    expect(
      errors.some(
        (e) =>
          e.includes("Permissions Violation for Subscription") && e.includes("doppel.dev.thermostat.b1.cmd"),
      ),
    ).toBe(true);
    expect(
      errors.some((e) => e.includes("Permissions Violation for Subscription") && e.includes("doppel.dev.>")),
    ).toBe(true);
    sub.unsubscribe();
    wildcard.unsubscribe();
  });

  it("over MQTT: A's username and password work for its own topics only", async () => {
    const mq = await mqtt.connectAsync(nats.mqttUrl, {
      clientId: "secdev-a1",
      username: "thermostat/a1",
      password: secrets.get("thermostat/a1") as string,
      clean: true,
      reconnectPeriod: 0,
    });
    try {
      const own = await mq.subscribeAsync("doppel/dev/thermostat/a1/desired", { qos: 1 });
      expect(own.map((g) => g.qos)).toEqual([1]);
      // The server answers SUBACK with the failure code (0x80) for another device's topic.
      await expect(mq.subscribeAsync("doppel/dev/thermostat/b1/cmd", { qos: 1 })).rejects.toThrow(
        /Subscribe error/,
      );

      await mq
        .publishAsync("doppel/dev/thermostat/b1/reported", JSON.stringify({ temperature: 77 }), { qos: 1 })
        .catch(() => undefined);
      await mq.publishAsync("doppel/dev/thermostat/a1/reported", JSON.stringify({ temperature: 23 }), {
        qos: 1,
      });
      await eventually(
        async () =>
          (await client.getTwin({ type: "thermostat", id: "a1" })).reported["temperature"] === 23
            ? true
            : undefined,
        "a1's MQTT report",
      );
      expect(await twinVersion("thermostat", "b1")).toBe(0);

      // Desired state reaches the device on its own QoS 1 subscription.
      const received: string[] = [];
      mq.on("message", (topic) => received.push(topic));
      await client.updateDesired({ type: "thermostat", id: "a1" }, { heating: true });
      await eventually(
        () => (received.includes("doppel/dev/thermostat/a1/desired") ? true : undefined),
        "the desired push over MQTT",
      );
    } finally {
      await mq.endAsync(true);
    }
  });

  it("over MQTT: a wrong password is refused", async () => {
    await expect(
      mqtt.connectAsync(nats.mqttUrl, {
        clientId: "secdev-bad",
        username: "thermostat/a1",
        password: "dpd_wrong",
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      }),
    ).rejects.toThrow(/Not authorized|Bad User Name or Password|refused/i);
  });

  it("a revoked device is disconnected now and cannot reconnect", async () => {
    const { nc } = await rawConnect({ user: "thermostat/r1", pass: secrets.get("thermostat/r1") });
    const closed = nc.closed();
    credentials.revoke({ type: "thermostat", id: "r1" });
    await closed; // the server kicked it (maxReconnectAttempts 0: the client does not come back)
    await expect(rawConnect({ user: "thermostat/r1", pass: secrets.get("thermostat/r1") })).rejects.toThrow(
      /Authorization Violation/,
    );
    expect(node.deviceAuth?.stats.refused.revoked).toBeGreaterThanOrEqual(1);
    expect(node.deviceAuth?.stats.kicked).toBeGreaterThanOrEqual(1);
  });

  it("a device over its rate is throttled, told on .errors and counted, while another device is unaffected", async () => {
    const connectDevice = (id: string) =>
      DeviceClient.connect({
        servers: nats.url,
        credentials: { user: `thermostat/${id}`, pass: secrets.get(`thermostat/${id}`) as string },
        type: "thermostat",
        id,
        waitOnFirstConnect: false,
      });
    const flood = await connectDevice("flood");
    const calm = await connectDevice("calm");
    try {
      const refused: string[] = [];
      flood.onError((error) => refused.push(error.code));
      const before = node.ingress.stats.rateLimited;
      for (let i = 1; i <= 25; i++) await flood.report({ temperature: i });
      for (let i = 1; i <= 5; i++) await calm.report({ temperature: i });
      await eventually(() => (refused.length === 5 ? true : undefined), "five refusals on .errors", 30_000);
      expect(new Set(refused)).toEqual(new Set(["RESOURCE_EXHAUSTED"]));
      expect(node.ingress.stats.rateLimited - before).toBe(5);
      await eventually(
        async () => ((await twinVersion("thermostat", "calm")) >= 5 ? true : undefined),
        "calm's reports",
      );
      const calmTwin = await client.getTwin({ type: "thermostat", id: "calm" });
      expect(calmTwin.reported["temperature"]).toBe(5);
      // The flood's first 20 reports were applied, the last 5 dropped.
      const floodTwin = await client.getTwin({ type: "thermostat", id: "flood" });
      const reports: number[] = [];
      for await (const event of client.history({ type: "thermostat", id: "flood" })) {
        if (event.type === "$reported") reports.push(event.seq);
      }
      expect(reports).toHaveLength(20);
      expect(floodTwin.reported["temperature"]).toBe(20);
    } finally {
      await flood.close();
      await calm.close();
    }
  });

  it("bad credentials of every shape are refused clearly, and the node keeps serving", async () => {
    const attempts: [string, Parameters<typeof connect>[0]][] = [
      ["none", {}],
      ["empty", { user: "", pass: "" }],
      ["unknown device", { user: "thermostat/nobody", pass: "dpd_x" }],
      ["wrong password", { user: "thermostat/a1", pass: "dpd_wrong" }],
      ["not a twin", { user: "../../etc", pass: "x" }],
      ["huge password", { user: "thermostat/a1", pass: "x".repeat(3000) }],
      ["token", { token: "thermostat/a1" }],
      [
        "malformed JWT",
        { authenticator: jwtAuthenticator("not.a.jwt", new TextEncoder().encode(seedOfUser())) },
      ],
      [
        "wrong signature",
        { authenticator: jwtAuthenticator(await foreignJwt(false), new TextEncoder().encode(seedOfUser())) },
      ],
      [
        "expired",
        {
          authenticator: jwtAuthenticator(
            await foreignJwt(true, nats.issuerSeed),
            new TextEncoder().encode(seedOfUser()),
          ),
        },
      ],
    ];
    for (const [what, options] of attempts) {
      await expect(rawConnect(options), what).rejects.toThrow(/Authorization Violation|maximum control line/);
    }
    const stats = node.deviceAuth?.stats;
    expect(stats?.refused["wrong-secret"]).toBeGreaterThanOrEqual(1);
    expect(stats?.refused.unknown).toBeGreaterThanOrEqual(1);
    expect(stats?.refused.malformed).toBeGreaterThanOrEqual(1);
    expect(stats?.refused["no-credential"]).toBeGreaterThanOrEqual(1);
    expect(stats?.refused["unsupported-credential"]).toBeGreaterThanOrEqual(1);
    // The operator sees the same counts on /metrics.
    const scraped = await (await fetch(`http://${node.metricsAddress}/metrics`)).text();
    expect(scraped).toMatch(
      /doppel_device_auth_total\{[^}]*outcome="refused"[^}]*reason="wrong-secret"[^}]*\} [1-9]/,
    );
    expect(scraped).toMatch(/doppel_device_auth_total\{[^}]*outcome="allowed"[^}]*\} [1-9]/);
    // Still serving: a good device connects and its report is applied.
    const { nc } = await rawConnect({ user: "thermostat/b1", pass: secrets.get("thermostat/b1") });
    nc.publish(
      "doppel.dev.thermostat.b1.reported",
      new TextEncoder().encode(JSON.stringify({ temperature: 18 })),
    );
    await eventually(
      async () => ((await twinVersion("thermostat", "b1")) > 0 ? true : undefined),
      "b1 applied",
    );
  });
});

function seedOfUser(): string {
  return new TextDecoder().decode(createUser().getSeed());
}

/** A user JWT signed by a random account (wrong signature), or by `issuerSeed` but already expired. */
async function foreignJwt(expired: boolean, issuerSeed?: string): Promise<string> {
  const { fromSeed } = await import("@nats-io/nkeys");
  const issuer = issuerSeed ? fromSeed(new TextEncoder().encode(issuerSeed)) : createAccount();
  const user = createUser();
  return encodeUser(
    "thermostat/a1",
    user,
    issuer,
    { pub: { allow: [">"] }, sub: { allow: [">"] } },
    {
      aud: "DOPPEL",
      ...(expired ? { exp: Math.floor(Date.now() / 1000) - 3600 } : {}),
    },
  );
}
