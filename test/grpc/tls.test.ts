import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PermissionDenied, QuotaExceeded, ResourceExhausted, Unauthenticated, Unavailable } from "doppel";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import { DoppelClient } from "../../runtime/grpc/client.ts";
import { ApiKeys, createKey } from "../../runtime/security/api-keys.ts";
import { RateLimiter } from "../../runtime/security/rate-limiter.ts";
import { makeCertificates, type TestCertificates } from "../security/certificates.ts";
import { type Harness, startHarness } from "./harness.ts";

const t1 = { type: "thermostat", id: "t1" };

describe("gRPC over TLS", () => {
  let certs: TestCertificates;
  let h: Harness;
  let key: string;
  const dir = mkdtempSync(join(tmpdir(), "doppel-tls-keys-"));

  beforeAll(async () => {
    certs = makeCertificates();
    const file = join(dir, "keys.json");
    key = createKey(file, { scopes: ["read", "command"] }).key;
    h = await startHarness({
      gateway: {
        tls: { cert: certs.read(certs.server.cert), key: certs.read(certs.server.key) },
        security: { keys: new ApiKeys(file, new ManualClock()) },
      },
      client: { token: key, ca: certs.read(certs.ca) },
    });
    await h.client.invoke(t1, "setTarget", { celsius: 22 });
  }, 120_000); // openssl and TLS handshakes on a loaded machine
  afterAll(async () => {
    await h?.stop();
    certs?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves a client that trusts its CA and sends a key", async () => {
    expect((await h.client.getTwin(t1)).state).toMatchObject({ setPoint: 22 });
    expect(await h.newClient({ ca: certs.read(certs.ca) }).health()).toBe("SERVING");
  });

  it("refuses a plaintext client", async () => {
    const plaintext = h.newClient({ token: key, timeoutMs: 5000 });
    const error = await plaintext.getTwin(t1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Unavailable);
  });

  it("refuses a client that does not trust the server's CA", async () => {
    const wrongCa = h.newClient({ token: key, ca: certs.read(certs.stranger.ca), timeoutMs: 5000 });
    await expect(wrongCa.getTwin(t1)).rejects.toBeInstanceOf(Unavailable);
  });

  it("still requires a key over TLS", async () => {
    await expect(h.newClient({ ca: certs.read(certs.ca) }).getTwin(t1)).rejects.toBeInstanceOf(
      Unauthenticated,
    );
  });
});

describe("gRPC with client certificates (mTLS)", () => {
  let certs: TestCertificates;
  let h: Harness;

  beforeAll(async () => {
    certs = makeCertificates();
    h = await startHarness({
      gateway: {
        tls: {
          cert: certs.read(certs.server.cert),
          key: certs.read(certs.server.key),
          clientCa: certs.read(certs.ca),
        },
        security: {
          limiter: new RateLimiter(new ManualClock()),
          certificateRules: [
            { commonName: "billing", scopes: ["read"] },
            { san: "URI:spiffe://corp/ops", scopes: ["read", "command"], types: ["thermostat"] },
            // Limits like an API key's: a twin quota, and a bucket of 2 (the manual clock never refills it).
            { commonName: "provisioner", scopes: ["read", "write"], limits: { maxTwins: 1 } },
            { commonName: "chatty", scopes: ["read"], limits: { ratePerSecond: 1, burst: 2 } },
          ],
        },
      },
    });
    const ops = certs.client("ops-robot", "URI:spiffe://corp/ops");
    await client(ops).invoke(t1, "setTarget", { celsius: 21 });
  }, 120_000); // openssl and TLS handshakes on a loaded machine
  afterAll(async () => {
    await h?.stop();
    certs?.remove();
  });

  const client = (pair: { cert: string; key: string }) =>
    h.newClient({
      ca: certs.read(certs.ca),
      cert: certs.read(pair.cert),
      key: certs.read(pair.key),
      timeoutMs: 5000,
    });

  it("maps a certificate's common name to its principal and scopes", async () => {
    const billing = client(certs.client("billing"));
    expect((await billing.getTwin(t1)).state).toMatchObject({ setPoint: 21 });
    const error = await billing.invoke(t1, "setTarget", { celsius: 25 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDenied);
    expect((error as Error).message).toBe("mtls:CN=billing lacks the 'command' scope");
  });

  it("maps a SAN, with the rule's type restriction", async () => {
    const ops = client(certs.client("ops-robot", "URI:spiffe://corp/ops"));
    expect((await ops.invoke(t1, "setTarget", { celsius: 24 })).version).toBeGreaterThan(0);
    await expect(ops.getTwin({ type: "pump", id: "p1" })).rejects.toThrow(
      "may not touch twins of type 'pump'",
    );
  });

  it("gives a verified certificate no rule matches no scopes", async () => {
    const error = await client(certs.client("stranger"))
      .getTwin(t1)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDenied);
    expect((error as Error).message).toContain("mtls:CN=stranger lacks the 'read' scope");
  });

  it("applies a rule's twin quota and rate to its certificate's principal", async () => {
    const provisioner = client(certs.client("provisioner"));
    await provisioner.reportState({ type: "thermostat", id: "mtls-new-1" }, { temperature: 20 });
    const refused = await provisioner
      .reportState({ type: "thermostat", id: "mtls-new-2" }, { temperature: 20 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QuotaExceeded);
    expect((refused as Error).message).toContain("mtls:CN=provisioner may create at most 1 twins");
    // Writes to twins that exist are not creations.
    expect((await provisioner.reportState(t1, { temperature: 19 })).version).toBeGreaterThan(0);

    const chatty = client(certs.client("chatty"));
    await chatty.getTwin(t1);
    await chatty.getTwin(t1);
    const throttled = await chatty.getTwin(t1).catch((e: unknown) => e);
    expect(throttled).toBeInstanceOf(ResourceExhausted);
    expect((throttled as Error).message).toContain("mtls:CN=chatty is over its rate limit (1/s)");
  });

  it("refuses a client without a certificate at the handshake", async () => {
    const anonymous = h.newClient({ ca: certs.read(certs.ca), timeoutMs: 5000 });
    await expect(anonymous.getTwin(t1)).rejects.toBeInstanceOf(Unavailable);
  });

  it("refuses a certificate signed by another CA", async () => {
    const foreign = new DoppelClient(h.gateway.address, {
      ca: certs.read(certs.ca),
      cert: certs.read(certs.stranger.server.cert),
      key: certs.read(certs.stranger.server.key),
      timeoutMs: 5000,
    });
    try {
      await expect(foreign.getTwin(t1)).rejects.toBeInstanceOf(Unavailable);
    } finally {
      foreign.close();
    }
  });
});
