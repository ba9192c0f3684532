import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import { gatewaySecurity, isLoopbackHost } from "../../runtime/node/grpc-security.ts";
import { compileConfig } from "../../runtime/node/options.ts";
import { createLogger } from "../../runtime/observability/logger.ts";

interface LogLine {
  readonly level: number;
  readonly msg: string;
}

describe("secure by default", () => {
  const dir = mkdtempSync(join(tmpdir(), "doppel-secdef-"));
  const keys = join(dir, "keys.json");
  const pem = join(dir, "x.pem");
  writeFileSync(pem, "not really a certificate; the gateway checks it when it binds");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const build = (grpc: Record<string, unknown>) => {
    const lines: LogLine[] = [];
    const destination = { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) };
    const logger = createLogger({ level: "info", destination });
    const parts = gatewaySecurity(compileConfig({ grpc }), new ManualClock(), logger, undefined);
    return { parts, lines };
  };

  it("knows loopback addresses", () => {
    for (const host of ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
      expect(isLoopbackHost(host)).toBe(true);
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com", ""])
      expect(isLoopbackHost(host)).toBe(false);
  });

  it("serves loopback without security and says so", () => {
    const { parts } = build({ listen: "localhost:50051" });
    expect(parts.security).toBeUndefined();
    expect(parts.summary).toBe("plaintext, no authentication (loopback only)");
  });

  it("refuses a non-loopback address without keys and TLS", () => {
    expect(() => build({ listen: "0.0.0.0:50051" })).toThrow(
      /refusing to serve gRPC on 0\.0\.0\.0:50051.*--insecure/,
    );
    expect(() => build({ listen: "0.0.0.0:50051", apiKeys: keys })).toThrow("refusing");
    expect(() => build({ listen: "0.0.0.0:50051", tls: { cert: pem, key: pem } })).toThrow("refusing");
  });

  it("serves it with keys and TLS, or with --insecure and a warning", () => {
    const secured = build({ listen: "0.0.0.0:50051", apiKeys: keys, tls: { cert: pem, key: pem } });
    expect(secured.parts.security?.keys).toBeDefined();
    expect(secured.parts.summary).toBe(`TLS, API keys from ${keys} (0 active)`);
    const insecure = build({ listen: "0.0.0.0:50051", insecure: true });
    expect(insecure.lines.some((l) => l.level === 40 && l.msg.includes("INSECURE"))).toBe(true);
  });

  it("takes a client certificate rule's limits and names a bad one", () => {
    const tls = (limits: unknown) => ({
      cert: pem,
      key: pem,
      clientCa: pem,
      clientCertificates: [{ commonName: "billing", scopes: ["write"], limits }],
    });
    const { parts } = build({ listen: "localhost:1", tls: tls({ ratePerSecond: 5, maxTwins: 10 }) });
    expect(parts.security?.certificateRules?.[0]?.limits).toEqual({ ratePerSecond: 5, maxTwins: 10 });
    expect(() => build({ listen: "localhost:1", tls: tls({ maxTwins: -1 }) })).toThrow(
      /grpc\.tls\.clientCertificates\.0\.limits\.maxTwins/,
    );
    expect(() => build({ listen: "localhost:1", tls: tls({ perHour: 5 }) })).toThrow(/perHour/);
  });

  it("names a TLS file it cannot read", () => {
    expect(() => build({ listen: "localhost:1", tls: { cert: join(dir, "missing.pem"), key: pem } })).toThrow(
      /grpc\.tls\.cert \(--tls-cert\): cannot read/,
    );
  });
});
