import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildConfig, START_ENV } from "../../runtime/cli/start-config.ts";
import { EdgeNode } from "../../runtime/node/edge-node.ts";
import { compileConfig } from "../../runtime/node/options.ts";
import { Pump } from "../../twins/pump.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const dir = mkdtempSync(join(tmpdir(), "doppel-start-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(content: object): string {
  const path = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

/** The configuration a node would run with. */
const compiled = (flags: Parameters<typeof buildConfig>[0], env: NodeJS.ProcessEnv = {}) =>
  compileConfig(buildConfig(flags, env));

describe("doppel start configuration sources: flag > env > config file > default", () => {
  const file = configFile({
    dataDir: "/from/file",
    nodeId: "file-node",
    grpc: { listen: "127.0.0.1:1111", maxMessageBytes: 2048 },
    shards: 8,
    log: { level: "error" },
    metrics: { listen: "127.0.0.1:2222" },
  });

  it("takes the default when nothing else sets a value", () => {
    const config = compiled({});
    expect(config.dataDir).toBe(".doppel/data");
    expect(config.grpc.listen).toBe("localhost:50051");
    expect(config.shards).toBe(256);
    expect(config.log.level).toBe("info");
    expect(config.tracing.enabled).toBe(false);
  });

  it("takes the config file over the default, also when named by DOPPEL_CONFIG", () => {
    for (const config of [compiled({ config: file }), compiled({}, { DOPPEL_CONFIG: file })]) {
      expect(config.dataDir).toBe("/from/file");
      expect(config.nodeId).toBe("file-node");
      expect(config.grpc.listen).toBe("127.0.0.1:1111");
      expect(config.shards).toBe(8);
    }
  });

  it("takes the environment over the config file, keeping the file's other settings", () => {
    const config = compiled(
      { config: file },
      {
        DOPPEL_DATA_DIR: "/from/env",
        DOPPEL_NODE_ID: "env-node",
        DOPPEL_LISTEN: "127.0.0.1:3333",
        DOPPEL_SHARDS: "16",
        DOPPEL_LOG_LEVEL: "debug",
        DOPPEL_METRICS: "off",
      },
    );
    expect(config.dataDir).toBe("/from/env");
    expect(config.nodeId).toBe("env-node");
    expect(config.grpc).toEqual({ listen: "127.0.0.1:3333", maxMessageBytes: 2048, insecure: false });
    expect(config.shards).toBe(16);
    expect(config.log.level).toBe("debug");
    expect(config.metrics.listen).toBe(false);
  });

  it("takes a flag over the environment", () => {
    const env = {
      DOPPEL_CONFIG: "/no/such/file.json",
      DOPPEL_DATA_DIR: "/from/env",
      DOPPEL_NODE_ID: "env-node",
      DOPPEL_LISTEN: "127.0.0.1:3333",
      DOPPEL_SHARDS: "16",
      DOPPEL_LOG_LEVEL: "debug",
      DOPPEL_TRACES: "on",
    };
    const config = compiled(
      {
        config: file,
        data: "/from/flag",
        nodeId: "flag-node",
        listen: "off",
        shards: "32",
        logLevel: "warn",
        traces: "off",
      },
      env,
    );
    expect(config.dataDir).toBe("/from/flag");
    expect(config.nodeId).toBe("flag-node");
    expect(config.grpc.listen).toBe(false);
    expect(config.shards).toBe(32);
    expect(config.log.level).toBe("warn");
    expect(config.tracing.enabled).toBe(false);
  });

  it("reads NATS, Redis, the cluster name and Cassandra from DOPPEL_NATS, DOPPEL_REDIS, DOPPEL_CLUSTER, DOPPEL_CASSANDRA", () => {
    const config = compiled(
      {},
      {
        DOPPEL_NATS: "nats://a:4222, nats://b:4222",
        DOPPEL_REDIS: "redis://r:6379",
        DOPPEL_CLUSTER: "prod",
        DOPPEL_CASSANDRA: "c1:9042,c2",
      },
    );
    expect(config.nats?.servers).toEqual(["nats://a:4222", "nats://b:4222"]);
    expect(config.cluster).toMatchObject({ name: "prod", redis: "redis://r:6379" });
    expect(config.store).toMatchObject({ kind: "cassandra", contactPoints: ["c1:9042", "c2"] });
    // A --store flag wins over DOPPEL_CASSANDRA; both as flags contradict each other.
    expect(compiled({ store: "memory" }, { DOPPEL_CASSANDRA: "c1" }).store.kind).toBe("memory");
    expect(() => buildConfig({ store: "memory", cassandra: "c1" }, {})).toThrow(
      /either --store or --cassandra/,
    );
  });

  it("reads DOPPEL_TRACES: on/1, console, off/0; anything else is refused by name", () => {
    expect(compiled({}, { DOPPEL_TRACES: "on" }).tracing).toEqual({ enabled: true, exporter: "none" });
    expect(compiled({}, { DOPPEL_TRACES: "1" }).tracing.enabled).toBe(true);
    expect(compiled({}, { DOPPEL_TRACES: "console" }).tracing).toEqual({
      enabled: true,
      exporter: "console",
    });
    const tracingFile = configFile({ tracing: { enabled: true } });
    expect(compiled({ config: tracingFile }, { DOPPEL_TRACES: "off" }).tracing.enabled).toBe(false);
    expect(compiled({ config: tracingFile }, { DOPPEL_TRACES: "0" }).tracing.enabled).toBe(false);
    expect(() => buildConfig({}, { DOPPEL_TRACES: "maybe" })).toThrow(
      'DOPPEL_TRACES must be on, console or off (or 1/0), got "maybe"',
    );
  });

  it("names the variable or flag a bad value came from", () => {
    expect(() => buildConfig({}, { DOPPEL_SHARDS: "many" })).toThrow(
      "DOPPEL_SHARDS must be a positive integer",
    );
    expect(() => buildConfig({ shards: "-1" }, { DOPPEL_SHARDS: "4" })).toThrow(
      "--shards must be a positive integer",
    );
    expect(() => buildConfig({}, { DOPPEL_CONFIG: join(dir, "missing.json") })).toThrow(
      /cannot read config file/,
    );
  });

  it("ignores empty variables, and reads no variable outside its scheme", () => {
    expect(compiled({}, { DOPPEL_DATA_DIR: "", DOPPEL_NATS_URL: "nats://old:4222" }).nats).toBeUndefined();
    expect(Object.values(START_ENV).every((name) => /^DOPPEL_[A-Z_]+$/.test(name))).toBe(true);
  });
});

describe("configuration refuses durations that make no sense", () => {
  it.each([
    [{ limits: { callTimeout: 0 } }, "limits.callTimeout"],
    [{ limits: { requestTimeout: "0s" } }, "limits.requestTimeout"],
    [{ nats: { servers: "nats://x:4222", consumer: { ackWait: 0 } } }, "nats.consumer.ackWait"],
    [
      { nats: { servers: "nats://x:4222", consumer: { processingDeadline: "0s" } } },
      "nats.consumer.processingDeadline",
    ],
    [
      { nats: { servers: "nats://x:4222" }, cluster: { name: "c", redis: "redis://r", leaseTtl: "0ms" } },
      "cluster.leaseTtl",
    ],
    [{ store: { kind: "cassandra", contactPoints: ["c:9042"], requestTimeout: 0 } }, "store.requestTimeout"],
  ])("refuses %j naming %s", (input, field) => {
    expect(() => compileConfig(input)).toThrow(`${field}: must be a duration above zero`);
  });

  it("still takes zero where it means something (Cassandra's history clock skew)", () => {
    const config = compileConfig({
      store: { kind: "cassandra", contactPoints: ["c:9042"], historyClockSkew: 0 },
    });
    expect(config.store).toMatchObject({ historyClockSkew: 0 });
  });

  it("takes the security flags and DOPPEL_API_KEYS, keeping the file's TLS settings", () => {
    const file = configFile({ grpc: { tls: { cert: "file.pem", key: "file-key.pem", clientCa: "ca.pem" } } });
    const config = compiled(
      { config: file, tlsCert: "flag.pem", insecure: true, listen: "0.0.0.0:1" },
      { DOPPEL_API_KEYS: "/keys.json" },
    );
    expect(config.grpc).toMatchObject({
      listen: "0.0.0.0:1",
      apiKeys: "/keys.json",
      insecure: true,
      tls: { cert: "flag.pem", key: "file-key.pem", clientCa: "ca.pem" },
    });
    expect(compiled({ apiKeys: "/flag.json" }, { DOPPEL_API_KEYS: "/env.json" }).grpc.apiKeys).toBe(
      "/flag.json",
    );
  });
});

describe("doppel start --coap", () => {
  it("serves CoAP from --coap or DOPPEL_COAP, keeps the file's other CoAP settings, and 'off' serves none", () => {
    const file = configFile({ coap: { listen: "127.0.0.1:5683", maxObservers: 10 } });
    expect(compiled({ config: file }).coap).toMatchObject({ listen: "127.0.0.1:5683", maxObservers: 10 });
    expect(compiled({ config: file, coap: "localhost:5684" }).coap).toMatchObject({
      listen: "localhost:5684",
      maxObservers: 10,
      insecure: false,
    });
    expect(compiled({}, { DOPPEL_COAP: "localhost:5685" }).coap?.listen).toBe("localhost:5685");
    expect(compiled({ config: file }, { DOPPEL_COAP: "off" }).coap).toBeUndefined();
    expect(compiled({}).coap).toBeUndefined();
  });

  it("--insecure also allows plaintext CoAP beyond loopback; a bad address names the field", () => {
    expect(compiled({ coap: "0.0.0.0:5683", insecure: true }).coap?.insecure).toBe(true);
    expect(compiled({ insecure: true }).coap).toBeUndefined();
    expect(() => compiled({ coap: "5683" })).toThrow(/coap\.listen/);
  });
});

describe("doppel start --edge-twins", () => {
  const nats = "nats://127.0.0.1:4222";
  it("a thick edge takes its twin types from --edge-twins, DOPPEL_EDGE_TWINS or the file's edge.twins", () => {
    const file = configFile({ nats: { servers: nats }, edge: { name: "plant-a", twins: ["pump"] } });
    expect(compiled({ config: file }).edge?.twins).toEqual(["pump"]);
    expect(compiled({ config: file, edgeTwins: "thermostat, valve" }).edge).toMatchObject({
      name: "plant-a",
      twins: ["thermostat", "valve"],
    });
    expect(compiled({ edge: "plant-b", nats }, { DOPPEL_EDGE_TWINS: "thermostat" }).edge).toMatchObject({
      name: "plant-b",
      twins: ["thermostat"],
      log: { maxBytes: 1024 ** 3, maxAge: 7 * 24 * 3_600_000 },
    });
    // Without edge twins the edge is thin.
    expect(compiled({ edge: "plant-b", nats }).edge?.twins).toBeUndefined();
  });

  it("an edge node's --coap is its CoAP listener (docs/edge.md: CoAP devices at the edge)", () => {
    const config = compiled({ edge: "plant-b", nats, coap: "127.0.0.1:5683" });
    expect(config.edge?.name).toBe("plant-b");
    expect(config.coap?.listen).toBe("127.0.0.1:5683");
  });

  it("refuses edge twins without an edge, an empty or repeated list and an invalid type, by name", () => {
    expect(() => compiled({ edgeTwins: "thermostat", nats })).toThrow(
      "--edge-twins is for an edge node: give --edge NAME too",
    );
    expect(() => compiled({ edge: "e", nats }, { DOPPEL_EDGE_TWINS: "thermostat,,valve" })).toThrow(
      /DOPPEL_EDGE_TWINS must be twin types separated by commas/,
    );
    expect(() => compiled({ edge: "e", nats, edgeTwins: "thermostat,thermostat" })).toThrow(
      "configuration: edge.twins: names a twin type twice",
    );
    expect(() => compiled({ edge: "e", nats, edgeTwins: "9lives" })).toThrow(
      /edge\.twins\.0: invalid twin type "9lives": '9' at position 1 cannot start a twin type/,
    );
    const empty = configFile({ nats: { servers: nats }, edge: { name: "e", twins: [] } });
    expect(() => compiled({ config: empty })).toThrow("edge.twins: name at least one twin type");
  });
  it("a thick edge runs on the embedded store and never applies edges' logs itself", () => {
    expect(() => compiled({ edge: "e", nats, edgeTwins: "thermostat", store: "memory" })).toThrow(
      "configuration: store: a thick edge runs its twins on the embedded store: use sqlite, not memory",
    );
    const replicating = configFile({ nats: { servers: nats, replicateEdges: true }, edge: { name: "e" } });
    expect(() => compiled({ config: replicating })).toThrow(
      "nats.replicateEdges: an edge node does not apply edges' logs (cloud nodes do): remove it",
    );
    // A cloud node applies them unless told not to.
    expect(compiled({ nats }).nats?.replicateEdges).toBeUndefined();
    const off = configFile({ nats: { servers: nats, replicateEdges: false } });
    expect(compiled({ config: off }).nats?.replicateEdges).toBe(false);
  });

  it("an edge twin type none of the twin modules defines is refused before anything is opened", async () => {
    const started = EdgeNode.start(
      // Nothing listens there: the refusal comes before the edge connects.
      { edge: { name: "e", twins: ["thermostat", "valve"] }, nats: { servers: "nats://127.0.0.1:1" } },
      { twins: [Thermostat, Pump] },
    );
    await expect(started).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message:
        "edge.twins: valve is not a type of the twin modules (thermostat, pump); load its module with --twins",
    });
  });
});
