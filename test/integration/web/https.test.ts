/**
 * The HTTP listener's own security, on a real node: with the gateway's certificate it serves REST
 * over TLS only (an HTTPS client trusting the test CA gets answers; a plaintext request to the same
 * port and a client that does not trust the CA get none), and it refuses to bind a non-loopback
 * address without API keys and TLS unless `insecure`, with the error naming HTTP and the address.
 */
import { DoppelNode } from "doppel/node";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { makeCertificates, type TestCertificates } from "../../security/certificates.ts";
import { type RestNode, startRestNode } from "./harness.ts";

describe("HTTP listener: TLS and secure by default", () => {
  let certs: TestCertificates;
  let rest: RestNode;
  let trusting: Agent;

  beforeAll(async () => {
    certs = makeCertificates();
    rest = await startRestNode({
      keys: { reader: { scopes: ["read"] } },
      config: { grpc: { tls: { cert: certs.server.cert, key: certs.server.key } } },
    });
    trusting = new Agent({ connect: { ca: certs.read(certs.ca) } });
  });
  afterAll(async () => {
    await trusting?.close();
    await rest?.stop();
    certs?.remove();
  });

  it("serves HTTPS with the gateway's certificate: a client trusting the CA gets answers", async () => {
    expect(rest.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const response = await undiciFetch(`${rest.url}/v1/types`, {
      dispatcher: trusting,
      headers: { authorization: `Bearer ${rest.keys["reader"]}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { types: { name: string }[] };
    expect(body.types.map((t) => t.name)).toContain("thermostat");
    // The same keys as gRPC: no key is 401, over TLS too.
    const anonymous = await undiciFetch(`${rest.url}/v1/types`, { dispatcher: trusting });
    expect(anonymous.status).toBe(401);
  });

  it("a plaintext request to the TLS port and a client that does not trust the CA get no answer", async () => {
    const plain = rest.url.replace(/^https:/, "http:");
    await expect(undiciFetch(`${plain}/v1/types`)).rejects.toThrow();
    const strangers = new Agent({ connect: { ca: certs.read(certs.stranger.ca) } });
    try {
      await expect(undiciFetch(`${rest.url}/v1/types`, { dispatcher: strangers })).rejects.toThrow();
    } finally {
      await strangers.close();
    }
  });

  it("refuses a non-loopback HTTP address without keys and TLS, and says why", async () => {
    const start = (extra: Record<string, unknown>) =>
      DoppelNode.start(
        {
          store: { kind: "memory" },
          grpc: { listen: "127.0.0.1:0", ...extra },
          http: { listen: "0.0.0.0:0" },
          log: { level: "silent" },
        },
        { twins: [Thermostat], logger: silentLogger() },
      );
    await expect(start({})).rejects.toThrow(
      /^refusing to serve HTTP on 0\.0\.0\.0:0 \(not loopback\) with plaintext, no authentication: give --api-keys FILE and --tls-cert\/--tls-key/,
    );
    await expect(start({ tls: { cert: certs.server.cert, key: certs.server.key } })).rejects.toThrow(
      /refusing to serve HTTP on 0\.0\.0\.0:0 \(not loopback\) with TLS, no authentication/,
    );
    // With --insecure it serves (and warns); plaintext, as asked.
    const insecure = await start({ insecure: true });
    try {
      expect(insecure.httpUrl).toMatch(/^http:\/\//);
    } finally {
      await insecure.stop();
    }
  });
});
