import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { createKey } from "../../../runtime/security/api-keys.ts";
import {
  deviceTransport,
  eventually,
  type NatsNode,
  natsUrl,
  resetStream,
  STREAM,
  startNatsNode,
} from "../nats/harness.ts";

/**
 * HTTP device ingress against a real node on a real nats-server: a device's report goes over HTTP
 * into the JetStream ingress stream, like a NATS device's, and is answered 202 only once stored.
 * The node has API keys, so every device must present its own credential (HTTP Basic).
 */
describe("HTTP device ingress on the JetStream ingress path", () => {
  let n: NatsNode;
  let url: string;
  let dataDir: string;
  let serviceKey: string;
  const passwords = new Map<string, string>();
  const basic = (user: string, password: string) =>
    `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
  const as = (id: string) => basic(`thermostat/${id}`, passwords.get(id) ?? "");

  const post = async (
    path: string,
    options: { authorization?: string; body?: string; type?: string; headers?: Record<string, string> } = {},
  ) => {
    const response = await fetch(url + path, {
      method: "POST",
      headers: {
        "content-type": options.type ?? "application/json",
        ...(options.authorization ? { authorization: options.authorization } : {}),
        ...options.headers,
      },
      ...(options.body === undefined ? {} : { body: options.body }),
    });
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers,
      text,
      body: text ? JSON.parse(text) : undefined,
    };
  };
  const twin = (id: string) => n.node.twins.get({ type: "thermostat", id });
  /** Runs `during` while the ingress stream captures no device subject (a publish is not stored). */
  const withoutIngressStream = async (during: () => Promise<void>) => {
    const admin = await NatsTransport.connect({ servers: natsUrl() });
    const jsm = await jetstreamManager(admin.connection);
    const config = (await jsm.streams.info(STREAM)).config;
    try {
      await jsm.streams.update(STREAM, { ...config, subjects: ["doppel.dev.*.*.parked"] });
      await during();
    } finally {
      await jsm.streams.update(STREAM, config);
      await admin.close();
    }
  };

  beforeAll(async () => {
    await resetStream();
    dataDir = mkdtempSync(join(tmpdir(), "doppel-http-devices-"));
    const credentials = new DeviceCredentials(join(dataDir, "device-credentials.json"));
    for (const id of ["h1", "h2", "h3", "h4", "h5"])
      passwords.set(id, credentials.provision({ type: "thermostat", id }).password);
    const keysFile = join(dataDir, "api-keys.json");
    serviceKey = createKey(keysFile, { scopes: ["read", "write", "command", "admin"] }).key;
    n = await startNatsNode({
      config: {
        dataDir,
        limits: { maxPayloadBytes: 512 },
        metrics: { listen: "127.0.0.1:0" },
        grpc: { listen: "127.0.0.1:0", apiKeys: keysFile },
        http: { listen: "127.0.0.1:0", maxBodyBytes: 4096, deviceAckTimeout: 2_000 },
      },
    });
    url = n.node.httpUrl ?? "";
  });
  afterAll(async () => {
    await n?.stop();
    await resetStream();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("a device reports state and telemetry over HTTP; 202, then the twin shows both", async () => {
    const reported = await post("/v1/devices/thermostat/h1/reported", {
      authorization: as("h1"),
      body: JSON.stringify({ temperature: 18.5, heating: true }),
      headers: { "doppel-seq": "1" },
    });
    expect(reported.status).toBe(202);
    expect(reported.body.messageId).toMatch(/^http:thermostat\/h1:/);
    const view = await eventually(async () => {
      const v = await twin("h1");
      return v.reported["temperature"] === 18.5 ? v : undefined;
    }, "h1's report on the twin");
    expect(view.reported).toEqual({ temperature: 18.5, heating: true });

    const telemetry = await post("/v1/devices/thermostat/h1/telemetry", {
      authorization: as("h1"),
      body: JSON.stringify({ at: 7_000, metrics: { temperature: 18.6 } }),
    });
    expect(telemetry.status).toBe(202);
    const samples = await eventually(async () => {
      const got = await n.node.twins.telemetry({ type: "thermostat", id: "h1" }, { since: 0, until: 10_000 });
      return got.length === 1 ? got : undefined;
    }, "h1's telemetry sample");
    expect(samples[0]?.metrics["temperature"]).toBe(18.6);

    // The same sequence number again is not applied twice.
    const again = await post("/v1/devices/thermostat/h1/reported", {
      authorization: as("h1"),
      body: JSON.stringify({ temperature: 99 }),
      headers: { "doppel-seq": "1" },
    });
    expect(again.status).toBe(202);
    const marker = await post("/v1/devices/thermostat/h1/reported", {
      authorization: as("h1"),
      body: JSON.stringify({ heating: false }),
      headers: { "doppel-seq": "2" },
    });
    expect(marker.status).toBe(202);
    const after = await eventually(async () => {
      const v = await twin("h1");
      return v.reported["heating"] === false ? v : undefined;
    }, "h1's second report");
    expect(after.reported["temperature"]).toBe(18.5);
  });

  it("a device reads its desired state with the version as ETag, and If-None-Match gives 304", async () => {
    await n.node.twins.updateDesired({ type: "thermostat", id: "h2" }, { setPoint: 22 });
    const response = await fetch(`${url}/v1/devices/thermostat/h2/desired`, {
      headers: { authorization: as("h2") },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { version: number; desired: object; delta: object };
    expect(body.desired).toEqual({ setPoint: 22 });
    expect(body.delta).toEqual({ setPoint: 22 });
    expect(response.headers.get("etag")).toBe(`"${body.version}"`);
    const unchanged = await fetch(`${url}/v1/devices/thermostat/h2/desired`, {
      headers: { authorization: as("h2"), "if-none-match": `"${body.version}"` },
    });
    expect(unchanged.status).toBe(304);
  });

  it("acknowledges only once durable: with no stream storing reports the device gets 503, and nothing is applied", async () => {
    await withoutIngressStream(async () => {
      const refused = await post("/v1/devices/thermostat/h3/reported", {
        authorization: as("h3"),
        body: JSON.stringify({ temperature: 31.5 }),
      });
      expect(refused.status).toBe(503);
      expect(refused.headers.get("content-type")).toMatch(/application\/problem\+json/);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(refused.body).toMatchObject({ code: "UNAVAILABLE", status: 503 });
      expect(refused.body.detail).toMatch(/ingress stream/);
      await expect(twin("h3")).rejects.toThrow(/not found/i);
    });
    // The device sends it again once the stream is back: stored, then applied.
    const stored = await post("/v1/devices/thermostat/h3/reported", {
      authorization: as("h3"),
      body: JSON.stringify({ temperature: 31.5 }),
    });
    expect(stored.status).toBe(202);
    await eventually(
      async () => ((await twin("h3")).reported["temperature"] === 31.5 ? true : undefined),
      "h3",
    );
  });

  it("refuses a missing, wrong or revoked credential 401, and another device's credential 403", async () => {
    const body = JSON.stringify({ temperature: 1 });
    const path = "/v1/devices/thermostat/h4/reported";
    const none = await post(path, { body });
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: "UNAUTHENTICATED", type: "urn:doppel:error:UNAUTHENTICATED" });
    expect(none.body.detail).toMatch(/Authorization: Basic/);
    expect(none.headers.get("www-authenticate")).toBe('Basic realm="doppel devices", charset="UTF-8"');
    expect((await post(path, { body, authorization: basic("thermostat/h4", "dpd_wrong") })).status).toBe(401);
    expect((await post(path, { body, authorization: "Bearer nonsense" })).status).toBe(401);
    // A service's API key is not a device credential.
    expect((await post(path, { body, authorization: `Bearer ${serviceKey}` })).status).toBe(401);
    const other = await post(path, { body, authorization: as("h5") });
    expect(other.status).toBe(403);
    expect(other.body).toMatchObject({ code: "PERMISSION_DENIED" });
    expect(other.body.detail).toMatch(/thermostat\/h5 may not act for device thermostat\/h4/);
    // h5's password under h4's name is a wrong password.
    expect(
      (await post(path, { body, authorization: basic("thermostat/h4", passwords.get("h5") ?? "") })).status,
    ).toBe(401);
    const desired = await fetch(`${url}/v1/devices/thermostat/h4/desired`, {
      headers: { authorization: as("h5") },
    });
    expect(desired.status).toBe(403);
    await expect(twin("h4")).rejects.toThrow(/not found/i);
  });

  it("answers malformed, huge and wrong-type payloads with problem details, never 500, and keeps serving", async () => {
    const path = "/v1/devices/thermostat/h5/reported";
    const cases: {
      body: string;
      type?: string;
      headers?: Record<string, string>;
      status: number;
      code: string;
    }[] = [
      { body: "{not json", status: 400, code: "INVALID_ARGUMENT" },
      { body: "[1,2,3]", status: 400, code: "INVALID_ARGUMENT" },
      { body: '"text"', status: 400, code: "INVALID_ARGUMENT" },
      { body: "", status: 400, code: "INVALID_ARGUMENT" },
      { body: JSON.stringify({ temperature: "hot" }), status: 400, code: "INVALID_ARGUMENT" },
      { body: JSON.stringify({ note: "x".repeat(1000) }), status: 400, code: "INVALID_ARGUMENT" },
      { body: JSON.stringify({ note: "x".repeat(10_000) }), status: 413, code: "INVALID_ARGUMENT" },
      { body: `${"[".repeat(200)}${"]".repeat(200)}`, status: 400, code: "INVALID_ARGUMENT" },
      { body: '{"__proto__": {"x": 1}}', status: 400, code: "INVALID_ARGUMENT" },
      {
        body: "temperature=1",
        type: "application/x-www-form-urlencoded",
        status: 415,
        code: "INVALID_ARGUMENT",
      },
      {
        body: JSON.stringify({ temperature: 1 }),
        headers: { "doppel-seq": "-1" },
        status: 400,
        code: "INVALID_ARGUMENT",
      },
      {
        body: JSON.stringify({ temperature: 1 }),
        headers: { "doppel-at": "soon" },
        status: 400,
        code: "INVALID_ARGUMENT",
      },
    ];
    for (const c of cases) {
      const answer = await post(path, {
        authorization: as("h5"),
        body: c.body,
        ...(c.type ? { type: c.type } : {}),
        ...(c.headers ? { headers: c.headers } : {}),
      });
      expect({ body: c.body.slice(0, 40), status: answer.status }).toEqual({
        body: c.body.slice(0, 40),
        status: c.status,
      });
      expect(answer.headers.get("content-type")).toMatch(/application\/problem\+json/);
      expect(answer.body).toMatchObject({ code: c.code, status: c.status });
    }
    const telemetry = await post("/v1/devices/thermostat/h5/telemetry", {
      authorization: as("h5"),
      body: JSON.stringify({ metrics: { temperature: "warm" } }),
    });
    expect(telemetry.status).toBe(400);
    expect(telemetry.body.detail).toMatch(/telemetry/);
    const badId = await post("/v1/devices/thermostat/bad.id/reported", {
      authorization: as("h5"),
      body: "{}",
    });
    expect(badId.status).toBe(400);
    const badType = await post("/v1/devices/nosuchtype/h5/reported", { authorization: as("h5"), body: "{}" });
    expect(badType.status).toBe(404);
    // Nothing of it reached the twin, and the node still takes a good report.
    await expect(twin("h5")).rejects.toThrow(/not found/i);
    const good = await post(path, { authorization: as("h5"), body: JSON.stringify({ temperature: 20 }) });
    expect(good.status).toBe(202);
    await eventually(
      async () => ((await twin("h5")).reported["temperature"] === 20 ? true : undefined),
      "h5",
    );
  });

  it("documents the device routes in the OpenAPI document with the device credential scheme", async () => {
    const document = (await (await fetch(`${url}/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { security?: unknown; responses: Record<string, unknown> }>>;
      components: { securitySchemes: Record<string, unknown> };
    };
    const report = document.paths["/v1/devices/{type}/{id}/reported"]?.["post"];
    expect(report?.security).toEqual([{ deviceCredential: [] }]);
    expect(Object.keys(report?.responses ?? {})).toEqual(
      expect.arrayContaining(["202", "401", "403", "503"]),
    );
    expect(document.paths["/v1/devices/{type}/{id}/desired"]?.["get"]).toBeDefined();
    expect(document.components.securitySchemes["deviceCredential"]).toMatchObject({
      type: "http",
      scheme: "basic",
    });
  });

  it("counts device requests by outcome in doppel_http_devices_total", async () => {
    const counts = async () => {
      const metrics = await (await fetch(`http://${n.node.metricsAddress}/metrics`)).text();
      const count = (outcome: string) =>
        Number(
          new RegExp(`doppel_http_devices_total\\{outcome="${outcome}"[^}]*\\} (\\d+)`).exec(metrics)?.[1] ??
            0,
        );
      return {
        stored: count("stored"),
        unauthorized: count("unauthorized"),
        unavailable: count("unavailable"),
      };
    };
    const before = await counts();
    const path = "/v1/devices/thermostat/h1/reported";
    const body = JSON.stringify({ temperature: 19.5 });
    expect((await post(path, { authorization: as("h1"), body })).status).toBe(202);
    expect((await post(path, { authorization: basic("thermostat/h1", "dpd_wrong"), body })).status).toBe(401);
    await withoutIngressStream(async () => {
      expect((await post(path, { authorization: as("h1"), body })).status).toBe(503);
    });
    expect(await counts()).toEqual({
      stored: before.stored + 1,
      unauthorized: before.unauthorized + 1,
      unavailable: before.unavailable + 1,
    });
  });
});

/** The device rate (`limits.deviceRate`) over HTTP: one bucket per device, whatever it speaks. */
describe("HTTP device ingress under a device rate", () => {
  let n: NatsNode;
  let url: string;
  let dataDir: string;

  beforeAll(async () => {
    await resetStream();
    dataDir = mkdtempSync(join(tmpdir(), "doppel-http-rate-"));
    n = await startNatsNode({
      config: {
        dataDir,
        limits: { deviceRate: { ratePerSecond: 0.001, burst: 3 } },
        http: { listen: "127.0.0.1:0" },
      },
    });
    url = n.node.httpUrl ?? "";
  });
  afterAll(async () => {
    await n?.stop();
    await resetStream();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** Report `seq` sets a field of its own, so the reported state shows which reports were applied. */
  const FIELDS: Record<number, object> = {
    1: { temperature: 20 },
    2: { heating: true },
    3: { firmware: "1.0.3" },
    4: { temperature: 21 },
  };
  const report = (id: string, seq: number) =>
    fetch(`${url}/v1/devices/thermostat/${id}/reported`, {
      method: "POST",
      headers: { "content-type": "application/json", "doppel-seq": String(seq) },
      body: JSON.stringify(FIELDS[seq]),
    });
  const reported = async (id: string) => {
    try {
      return (await n.node.twins.get({ type: "thermostat", id })).reported;
    } catch {
      return {};
    }
  };

  it("charges an acknowledged report once: the burst is accepted and applied, the next is 429 with Retry-After", async () => {
    for (const seq of [1, 2, 3]) expect((await report("r1", seq)).status).toBe(202);
    // Every acknowledged report is applied (ingress does not charge it a second time and drop it).
    await eventually(
      async () => (Object.keys(await reported("r1")).length === 3 ? true : undefined),
      "r1's three reports applied",
    );
    const over = await report("r1", 4);
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).toMatch(/^\d+$/);
    const problem = (await over.json()) as { code: string; details: { limit: string } };
    expect(problem).toMatchObject({ code: "RESOURCE_EXHAUSTED", details: { limit: "device-rate" } });
    expect(n.node.httpDevices?.stored).toBe(3);
  });

  it("shares one bucket between a device's NATS and HTTP messages", async () => {
    const device = await deviceTransport();
    try {
      for (const seq of [1, 2]) {
        await device.publishDurable(
          "doppel.dev.thermostat.r2.reported",
          new TextEncoder().encode(JSON.stringify(FIELDS[seq])),
          { messageId: `nats-r2-${seq}`, timeoutMs: 5_000, headers: new Map([["Doppel-Seq", String(seq)]]) },
        );
      }
    } finally {
      await device.close();
    }
    await eventually(
      async () => (Object.keys(await reported("r2")).length === 2 ? true : undefined),
      "r2 over NATS",
    );
    expect((await report("r2", 3)).status).toBe(202);
    expect((await report("r2", 4)).status).toBe(429);
    await eventually(
      async () => ((await reported("r2"))["firmware"] === "1.0.3" ? true : undefined),
      "r2's HTTP report",
    );
  });
});
