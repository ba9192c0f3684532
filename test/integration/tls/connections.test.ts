/**
 * TLS to NATS and Redis against real servers this test starts on free loopback ports, configured
 * with a CA and certificates the test makes (openssl): a node connects to a TLS-only nats-server
 * (client certificates verified) and creates its JetStream stream there; the Redis connection the
 * cluster layer uses runs commands over TLS with a client certificate. Plaintext clients are
 * refused by both, and NATS refuses a TLS client without a certificate. (Cassandra TLS runs against
 * the suite's own Cassandra: test/integration/cassandra/tls.test.ts.)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisConnection } from "../../../cluster/membership/redis-connection.ts";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { makeCertificates, type TestCertificates } from "../../security/certificates.ts";

const ROOT = join(import.meta.dirname, "../../..");

/** Resolves once something accepts TCP connections on `port` (the server is up), or rejects after `timeoutMs`. */
async function listening(port: number, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

describe("TLS to NATS and Redis", () => {
  let certs: TestCertificates;
  let dir: string;
  let nats: ChildProcess | undefined;
  let redis: ChildProcess | undefined;
  let natsPort: number;
  let redisPort: number;
  let client: { cert: string; key: string };

  beforeAll(async () => {
    certs = makeCertificates();
    client = certs.client("doppel-node");
    dir = mkdtempSync(join(tmpdir(), "doppel-tls-servers-"));
    natsPort = await freePort();
    nats = spawn(
      join(ROOT, ".infra/bin/nats-server"),
      [
        "-a",
        "127.0.0.1",
        "-p",
        String(natsPort),
        "-js",
        "-sd",
        join(dir, "js"),
        "--tlsverify",
        "--tlscert",
        certs.server.cert,
        "--tlskey",
        certs.server.key,
        "--tlscacert",
        certs.ca,
      ],
      { stdio: "ignore" },
    );
    redisPort = await freePort();
    redis = spawn(
      "redis-server",
      [
        "--port",
        "0",
        "--tls-port",
        String(redisPort),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
        "--tls-cert-file",
        certs.server.cert,
        "--tls-key-file",
        certs.server.key,
        "--tls-ca-cert-file",
        certs.ca,
        "--tls-auth-clients",
        "yes",
      ],
      { stdio: "ignore" },
    );
    await Promise.all([listening(natsPort, nats), listening(redisPort, redis)]);
  });
  afterAll(async () => {
    await Promise.all([stop(nats), stop(redis)]);
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a node connects to a TLS-only NATS with a client certificate and runs its device stream there", async () => {
    const node = await DoppelNode.start(
      {
        store: { kind: "memory" },
        grpc: { listen: false },
        shards: 4,
        log: { level: "silent" },
        nats: {
          servers: `tls://127.0.0.1:${natsPort}`,
          tls: { ca: certs.ca, cert: client.cert, key: client.key },
          stream: { name: "DOPPEL_TLS_TEST", storage: "memory" },
        },
      },
      { twins: [Thermostat] },
    );
    try {
      const outcome = await node.twins.report({ type: "thermostat", id: "tls-1" }, { temperature: 20 });
      expect(outcome.version).toBeGreaterThan(0);
    } finally {
      await node.stop();
    }
  });

  it("NATS refuses a plaintext client and a TLS client without a certificate", async () => {
    await expect(
      NatsTransport.connect({
        servers: `nats://127.0.0.1:${natsPort}`,
        timeoutMs: 5000,
        maxReconnectAttempts: 0,
      }),
    ).rejects.toThrow();
    await expect(
      NatsTransport.connect({
        servers: `tls://127.0.0.1:${natsPort}`,
        tls: { caFile: certs.ca },
        timeoutMs: 5000,
        maxReconnectAttempts: 0,
      }),
    ).rejects.toThrow();
  });

  it("the cluster's Redis connection runs commands over TLS with a client certificate", async () => {
    const connection = await RedisConnection.connect(`redis://127.0.0.1:${redisPort}`, {
      tls: { ca: certs.read(certs.ca), cert: certs.read(client.cert), key: certs.read(client.key) },
    });
    try {
      expect(await connection.command(["SET", "doppel-tls", "yes"])).toBe("OK");
      expect(await connection.command(["GET", "doppel-tls"])).toBe("yes");
    } finally {
      await connection.close();
    }
  });

  it("Redis refuses a plaintext client", async () => {
    await expect(RedisConnection.connect(`redis://127.0.0.1:${redisPort}`)).rejects.toThrow(/cannot connect/);
  });
});
