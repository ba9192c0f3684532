/**
 * Cassandra TLS as driver options: what `store.tls` (and `--cassandra-ca/-cert/-key`) hand to
 * cassandra-driver's `sslOptions`. Not tested against a TLS-configured Cassandra (a second
 * Cassandra is too heavy for the test machines; docs/security.md says so).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildConfig } from "../../../runtime/cli/start-config.ts";
import { compileConfig } from "../../../runtime/node/options.ts";
import { compileCassandraSettings } from "../../../runtime/persistence/cassandra/options.ts";
import { clientOptions } from "../../../runtime/persistence/cassandra/session.ts";

describe("Cassandra TLS options", () => {
  const dir = mkdtempSync(join(tmpdir(), "doppel-cass-tls-"));
  const file = (name: string) => {
    const path = join(dir, name);
    writeFileSync(path, `-----BEGIN ${name}-----\n`);
    return path;
  };
  const ca = file("ca.pem");
  const cert = file("cert.pem");
  const key = file("key.pem");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("hands the CA, client certificate, key and server name to the driver", () => {
    const options = clientOptions(
      compileCassandraSettings({
        contactPoints: ["db:9042"],
        tls: { caFile: ca, certFile: cert, keyFile: key, serverName: "cassandra.internal" },
      }),
    );
    expect(options.sslOptions).toMatchObject({ rejectUnauthorized: true, servername: "cassandra.internal" });
    expect(String(options.sslOptions?.ca)).toContain("BEGIN ca.pem");
    expect(String(options.sslOptions?.cert)).toContain("BEGIN cert.pem");
    expect(String(options.sslOptions?.key)).toContain("BEGIN key.pem");
  });

  it("leaves TLS off without a tls section, and names an unreadable file", () => {
    expect(
      clientOptions(compileCassandraSettings({ contactPoints: ["db:9042"] })).sslOptions,
    ).toBeUndefined();
    expect(() =>
      clientOptions(
        compileCassandraSettings({ contactPoints: ["db:9042"], tls: { caFile: join(dir, "nope") } }),
      ),
    ).toThrow(/tls\.caFile: cannot read/);
  });

  it("takes --cassandra-ca/-cert/-key, and --nats-* and --redis-* for the other connections", () => {
    const config = compileConfig(
      buildConfig(
        {
          cassandra: "db:9042",
          cassandraCa: ca,
          cassandraCert: cert,
          cassandraKey: key,
          nats: "tls://n:4222",
          natsCa: ca,
          redis: "rediss://r:6379",
          redisCa: ca,
          redisCert: cert,
          redisKey: key,
        },
        {},
      ),
    );
    expect(config.store).toMatchObject({
      kind: "cassandra",
      tls: { caFile: ca, certFile: cert, keyFile: key },
    });
    expect(config.nats?.tls).toEqual({ ca });
    expect(config.cluster?.redisTls).toEqual({ ca, cert, key });
    expect(() => compileConfig(buildConfig({ nats: "tls://n:4222", natsCert: cert }, {}))).toThrow(
      "give both cert and key",
    );
  });
});
