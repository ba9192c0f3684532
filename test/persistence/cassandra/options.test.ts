import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../runtime/cli/start-config.ts";
import { ErrorCode } from "../../../runtime/core/errors.ts";
import { compileConfig } from "../../../runtime/node/options.ts";
import {
  compileCassandraSettings,
  parseContactPoints,
  replicationCql,
} from "../../../runtime/persistence/cassandra/options.ts";

describe("cassandra options", () => {
  it("fills defaults: local quorum, keyspace doppel, SimpleStrategy 1, 256 shards, layout left to the keyspace", () => {
    const config = compileCassandraSettings({ contactPoints: ["127.0.0.1:19042"] });
    expect(config).toMatchObject({
      contactPoints: ["127.0.0.1:19042"],
      localDataCenter: "datacenter1",
      keyspace: "doppel",
      replication: { class: "SimpleStrategy", replicationFactor: 1 },
      consistency: { read: 0x06, write: 0x06, serial: 0x09 },
      maxConcurrentRequests: 128,
      shards: 256,
      requestTimeout: 12_000,
    });
    expect(config.eventsPerBucket).toBeUndefined();
    expect(config.credentials).toBeUndefined();
    expect(config.tls).toBeUndefined();
  });

  it("takes consistency levels by any spelling, durations as text, credentials and TLS", () => {
    const config = compileCassandraSettings({
      contactPoints: ["db1", "db2:9142"],
      consistency: { read: "ONE", write: "EACH_QUORUM", serial: "SERIAL" },
      telemetryWindow: "1d",
      startupRetry: "2m",
      credentials: { username: "doppel", password: "s3cret" },
      tls: { caFile: "/etc/ca.pem" },
    });
    expect(config.consistency).toEqual({ read: 0x01, write: 0x07, serial: 0x08 });
    expect(config.telemetryWindow).toBe(86_400_000);
    expect(config.startupRetry).toBe(120_000);
    expect(config.tls).toEqual({ caFile: "/etc/ca.pem", rejectUnauthorized: true });
  });

  it("refuses unsafe names and bad values, naming each field", () => {
    let failure: unknown;
    try {
      compileCassandraSettings({
        contactPoints: ["db 1"],
        keyspace: "doppel; DROP TABLE x",
        consistency: { read: "lots" },
        replication: { class: "NetworkTopologyStrategy", dataCenters: { "dc'1": 3 } },
      });
    } catch (error) {
      failure = error;
    }
    expect(failure).toMatchObject({ code: ErrorCode.InvalidArgument });
    const message = (failure as Error).message;
    expect(message).toContain("contactPoints.0");
    expect(message).toContain("keyspace");
    expect(message).toContain("consistency.read: unknown consistency level 'lots'");
    expect(message).toContain("replication.dataCenters");
    expect(() => compileCassandraSettings({ contactPoints: [] })).toThrow(/contactPoints/);
    expect(() => compileCassandraSettings({ contactPoints: ["a"], keyspace: "Doppel" })).toThrow(/keyspace/);
  });

  it("renders the replication map from validated parts only", () => {
    expect(replicationCql({ class: "SimpleStrategy", replicationFactor: 3 })).toBe(
      "{'class': 'SimpleStrategy', 'replication_factor': 3}",
    );
    expect(replicationCql({ class: "NetworkTopologyStrategy", dataCenters: { dc1: 3, "eu-west": 2 } })).toBe(
      "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west': 2}",
    );
  });

  it("parses comma-separated contact points", () => {
    expect(parseContactPoints("127.0.0.1:19042")).toEqual(["127.0.0.1:19042"]);
    expect(parseContactPoints(" a:1, b ,[::1]:9042,")).toEqual(["a:1", "b", "[::1]:9042"]);
    expect(() => parseContactPoints(" , ")).toThrow(/no Cassandra contact points/);
    expect(() => parseContactPoints("a:1;b")).toThrow(/'a:1;b' is not host or host:port/);
  });

  it("the node configuration takes a cassandra store, with the node's shard count left out", () => {
    const config = compileConfig({
      shards: 64,
      store: { kind: "cassandra", contactPoints: ["10.0.0.1:9042"], keyspace: "prod", viewBuckets: 32 },
    });
    expect(config.store).toMatchObject({ kind: "cassandra", keyspace: "prod", viewBuckets: 32 });
    expect(config.shards).toBe(64);
    expect(() => compileConfig({ store: { kind: "cassandra", contactPoints: ["a"], shards: 4 } })).toThrow(
      /shards/,
    );
    expect(() => compileConfig({ store: { kind: "cassandra" } })).toThrow(/store.contactPoints/);
    // The node compiles its configuration again when it starts: compiling is idempotent.
    expect(compileConfig(compileConfig(config))).toEqual(config);
    expect(compileCassandraSettings(compileCassandraSettings({ contactPoints: ["a"] }))).toEqual(
      compileCassandraSettings({ contactPoints: ["a"] }),
    );
    expect(() => compileCassandraSettings({ contactPoints: ["a"], consistency: { read: 0x42 } })).toThrow(
      /unknown consistency level/,
    );
  });

  it("doppel start --cassandra sets the store, keeping the config file's other Cassandra settings", () => {
    expect(buildConfig({ cassandra: "10.0.0.1:9042,10.0.0.2" }, {})["store"]).toEqual({
      kind: "cassandra",
      contactPoints: ["10.0.0.1:9042", "10.0.0.2"],
    });
    expect(() => buildConfig({ cassandra: "a", store: "sqlite" }, {})).toThrow(
      /either --store or --cassandra/,
    );
  });
});
