import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { PermissionDenied, ResourceExhausted, Unauthenticated } from "doppel";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import { DoppelClient } from "../../runtime/grpc/client.ts";
import { ApiKeys, createKey, revokeKey } from "../../runtime/security/api-keys.ts";
import { RateLimiter } from "../../runtime/security/rate-limiter.ts";
import { Pump } from "../../twins/pump.ts";
import { type Harness, rawUnary, startHarness } from "./harness.ts";

const t1 = { type: "thermostat", id: "t1" };
const p1 = { type: "pump", id: "p1" };

describe("gRPC API keys: authenticate → authorize → rate-limit", () => {
  const dir = mkdtempSync(join(tmpdir(), "doppel-auth-"));
  const file = join(dir, "keys.json");
  const clock = new ManualClock();
  let h: Harness;
  let admin: string;
  let adminId: string;
  let thermostatsOnlyId: string;
  let reader: string;
  let thermostatsOnly: string;
  let limited: string;
  let limitedId: string;
  let revoked: string;
  let revokedId: string;
  const throttled: string[] = [];
  const refused: string[] = [];

  beforeAll(async () => {
    ({
      key: admin,
      record: { id: adminId },
    } = createKey(file, { scopes: ["read", "write", "command", "admin"] }));
    reader = createKey(file, { scopes: ["read"] }).key;
    ({
      key: thermostatsOnly,
      record: { id: thermostatsOnlyId },
    } = createKey(file, {
      scopes: ["read", "command", "write"],
      types: ["thermostat"],
    }));
    ({
      key: limited,
      record: { id: limitedId },
    } = createKey(file, {
      scopes: ["read"],
      limits: { ratePerSecond: 1, burst: 2 },
    }));
    ({
      key: revoked,
      record: { id: revokedId },
    } = createKey(file, { scopes: ["read"] }));
    h = await startHarness({
      twins: [Pump],
      gateway: {
        security: {
          keys: new ApiKeys(file, clock),
          limiter: new RateLimiter(clock),
          throttled: (p) => throttled.push(p.id),
          refused: (code) => refused.push(code),
        },
      },
      client: { token: admin },
    });
    await h.client.invoke(t1, "setTarget", { celsius: 22 });
    await h.client.invoke(p1, "start", { rpm: 1000 });
  });
  afterAll(async () => {
    await h?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const as = (token?: string) => h.newClient(token === undefined ? {} : { token });

  it("refuses a call without a key with UNAUTHENTICATED, on the wire and as a DoppelError", async () => {
    const error = await as()
      .getTwin(t1)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Unauthenticated);
    expect((error as Error).message).toContain("missing credential");
    const { error: raw } = await rawUnary((cb) => h.raw.getTwin({ type: "thermostat", id: "t1" }, cb));
    expect(raw?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(raw?.metadata.get("doppel-error-code")).toEqual(["UNAUTHENTICATED"]);
    expect(refused).toContain("UNAUTHENTICATED");
  });

  it("refuses streams without a key too", async () => {
    const watch = async () => {
      for await (const _ of as().watch(t1)) return "got a change";
      return "ended";
    };
    await expect(watch()).rejects.toBeInstanceOf(Unauthenticated);
    const history = async () => {
      for await (const _ of as().history(t1)) return "got an event";
      return "ended";
    };
    await expect(history()).rejects.toBeInstanceOf(Unauthenticated);
  });

  it("lets a read key read but not invoke, naming the missing scope", async () => {
    const client = as(reader);
    expect((await client.getTwin(t1)).state).toMatchObject({ setPoint: 22 });
    const events: number[] = [];
    for await (const event of client.history(t1)) events.push(event.seq);
    expect(events.length).toBeGreaterThan(0);
    const error = await client.invoke(t1, "setTarget", { celsius: 25 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDenied);
    expect((error as PermissionDenied).message).toContain("lacks the 'command' scope");
    expect((error as PermissionDenied).details).toMatchObject({ scope: "command" });
    await expect(client.updateDesired(t1, { heating: true })).rejects.toThrow("lacks the 'write' scope");
    await expect(client.cluster()).rejects.toThrow("lacks the 'admin' scope");
    expect((await h.client.getTwin(t1)).state).toMatchObject({ setPoint: 22 }); // unchanged
  });

  it("refuses a type-restricted key on another type", async () => {
    const client = as(thermostatsOnly);
    const pumpBefore = await h.client.getTwin(p1);
    await client.invoke(t1, "setTarget", { celsius: 23 });
    const error = await client.invoke(p1, "stop", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDenied);
    expect((error as Error).message).toContain("may not touch twins of type 'pump'");
    await expect(client.getTwin(p1)).rejects.toBeInstanceOf(PermissionDenied);
    await expect(client.queryTwins("pump")).rejects.toBeInstanceOf(PermissionDenied);
    expect((await h.client.getTwin(p1)).version).toBe(pumpBefore.version);
  });

  it("refuses a revoked key once the node re-reads the file", async () => {
    const client = as(revoked);
    await client.getTwin(t1);
    revokeKey(file, revokedId);
    await clock.advance(1000); // the node re-reads the keys file at most once a second
    const error = await client.getTwin(t1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Unauthenticated);
    expect((error as Error).message).toBe(`API key ${revokedId} was revoked`);
  });

  it("rate-limits a key: RESOURCE_EXHAUSTED with retry-after-ms, counted, then allowed again", async () => {
    const client = as(limited);
    await client.getTwin(t1);
    await client.getTwin(t1);
    const error = await client.getTwin(t1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ResourceExhausted);
    expect((error as ResourceExhausted).details).toMatchObject({ retryAfterMs: 1000 });
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${limited}`);
    const { error: raw } = await rawUnary((cb) =>
      h.raw.getTwin({ type: "thermostat", id: "t1" }, metadata, cb),
    );
    expect(raw?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(raw?.metadata.get("retry-after-ms")).toEqual(["1000"]);
    expect(throttled.filter((id) => id === limitedId)).toHaveLength(2);
    await as(reader).getTwin(t1); // other keys are unaffected
    await clock.advance(1000);
    await client.getTwin(t1);
  });

  it.each<[string, string]>([
    ["empty bearer", "Bearer "],
    ["no scheme", reader_placeholder()],
    ["basic auth", "Basic dXNlcjpwYXNz"],
    ["garbage", "Bearer !!!not-a-key!!!"],
    ["right shape, unknown", `Bearer dpk_000000000000_${"A".repeat(43)}`],
    ["right id, wrong secret", "WRONG_SECRET"],
    ["huge", `Bearer ${"x".repeat(6000)}`],
  ])("refuses a bad credential (%s) with UNAUTHENTICATED and keeps serving", async (_what, header) => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", header === "WRONG_SECRET" ? `Bearer ${reader.slice(0, -4)}AAAA` : header);
    const { error } = await rawUnary((cb) => h.raw.getTwin({ type: "thermostat", id: "t1" }, metadata, cb));
    expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error?.details).toMatch(/API key|authorization/);
    expect((await h.client.getTwin(t1)).version).toBeGreaterThan(0);
  });

  it("records each call's principal on its events, and GetHistory shows it (the audit trail)", async () => {
    const restricted = as(thermostatsOnly);
    const { version: commandVersion } = await restricted.invoke(t1, "setTarget", { celsius: 26 });
    const desired = await h.client.updateDesired(t1, { heating: false });
    const { version: reportVersion } = await h.client.reportState(t1, { temperature: 20.5 });
    const byVersion = new Map<number, string | undefined>();
    for await (const event of as(reader).history(t1)) byVersion.set(event.seq, event.principal);
    const restrictedId = thermostatsOnlyId;
    expect(byVersion.get(commandVersion)).toBe(`service-key:${restrictedId}`);
    expect(byVersion.get(desired.version)).toBe(`service-key:${adminId}`);
    expect(byVersion.get(reportVersion)).toBe(`service-key:${adminId}`);
  });

  it("keeps health reachable without a key", async () => {
    expect(await as().health()).toBe("SERVING");
  });

  it("refuses a token the client cannot send", () => {
    expect(() => new DoppelClient(h.gateway.address, { token: "has space" })).toThrow("printable ASCII");
  });
});

/** An authorization value without the Bearer scheme. */
function reader_placeholder(): string {
  return "dpk_000000000000_AAAA";
}
