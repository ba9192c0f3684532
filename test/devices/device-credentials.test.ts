import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../runtime/devices/auth/device-credentials.ts";
import { devicePermissions } from "../../runtime/devices/auth/device-permissions.ts";

describe("device credentials file", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "doppel-creds-"));
    file = join(dir, "device-credentials.json");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("issues a secret once, keeps only its hash, and checks it", () => {
    const credentials = new DeviceCredentials(file);
    const issued = credentials.provision({ type: "thermostat", id: "t1" });
    expect(issued.user).toBe("thermostat/t1");
    expect(readFileSync(file, "utf8")).not.toContain(issued.password);
    // A second reader (the node) sees what the first (the CLI) wrote.
    const node = new DeviceCredentials(file);
    expect(node.check("thermostat/t1", issued.password)).toEqual({
      ok: true,
      ref: { type: "thermostat", id: "t1" },
    });
    expect(node.check("thermostat/t1", `${issued.password}x`)).toEqual({ ok: false, reason: "wrong-secret" });
    expect(node.check("thermostat/t2", issued.password)).toEqual({ ok: false, reason: "unknown" });
  });

  it("refuses malformed input of every shape without throwing", () => {
    const credentials = new DeviceCredentials(file);
    credentials.provision({ type: "thermostat", id: "t1" });
    for (const [user, password] of [
      [undefined, undefined],
      ["", ""],
      ["thermostat/t1", ""],
      ["thermostat/t1", "x".repeat(10_000)],
      ["no-slash", "x"],
      ["a.b/c", "x"],
      ["thermostat/t1", 42],
      [{}, "x"],
    ] as const) {
      expect(credentials.check(user, password)).toEqual({ ok: false, reason: "malformed" });
    }
  });

  it("revokes, refuses a second provision while active, and issues a new secret after revocation", () => {
    const credentials = new DeviceCredentials(file);
    const first = credentials.provision({ type: "pump", id: "p1" });
    expect(() => credentials.provision({ type: "pump", id: "p1" })).toThrow(/already has a credential/);
    expect(credentials.revoke({ type: "pump", id: "p1" })).toBe(true);
    expect(credentials.revoke({ type: "pump", id: "p1" })).toBe(false);
    expect(credentials.check("pump/p1", first.password)).toEqual({ ok: false, reason: "revoked" });
    expect(credentials.isActive("pump/p1")).toBe(false);
    const second = credentials.provision({ type: "pump", id: "p1" });
    expect(credentials.check("pump/p1", second.password).ok).toBe(true);
    expect(credentials.check("pump/p1", first.password)).toEqual({ ok: false, reason: "wrong-secret" });
    expect(() => credentials.revoke({ type: "pump", id: "nope" })).toThrow(/has no credential/);
  });

  it("refuses a corrupt file with the file's name", () => {
    writeFileSync(file, "{not json");
    expect(() => new DeviceCredentials(file).list()).toThrow(
      /device credentials file .*device-credentials.json/,
    );
    writeFileSync(file, JSON.stringify({ version: 1, devices: { "a/b": { hash: "md5:x", createdAt: "" } } }));
    expect(() => new DeviceCredentials(file).list()).toThrow(/not a Doppel credentials file/);
  });
});

describe("device permissions", () => {
  it("allow exactly the device's own subjects and inbox", () => {
    const permissions = devicePermissions({ type: "thermostat", id: "t1" });
    expect(permissions.pub.allow).toEqual([
      "doppel.dev.thermostat.t1.reported",
      "doppel.dev.thermostat.t1.telemetry",
      "doppel.dev.thermostat.t1.sync",
      "doppel.dev.thermostat.t1.cmd-result",
    ]);
    expect(permissions.sub.allow).toEqual([
      "doppel.dev.thermostat.t1.desired",
      "doppel.dev.thermostat.t1.cmd",
      "doppel.dev.thermostat.t1.errors",
      "_INBOX.doppel.thermostat.t1.>",
    ]);
    expect(permissions.resp.max).toBe(1);
  });
});
