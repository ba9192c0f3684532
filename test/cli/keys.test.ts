import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createKeyCommand, listKeysCommand, revokeKeyCommand } from "../../runtime/cli/keys.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import { ApiKeys } from "../../runtime/security/api-keys.ts";

describe("doppel keys", () => {
  const dir = mkdtempSync(join(tmpdir(), "doppel-keys-"));
  const file = join(dir, "sub", "keys.json");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("creates a key shown once, stores only its hash, lists and revokes it", () => {
    const lines: string[] = [];
    createKeyCommand(
      { file, scopes: "read,command", types: "thermostat", prefix: "plant-a-", rate: "5" },
      (l) => lines.push(l),
    );
    const key = lines[0] ?? "";
    expect(key).toMatch(/^dpk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const stored = readFileSync(file, "utf8");
    expect(stored).not.toContain(key.slice(17));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const { principal, limits } = new ApiKeys(file, new ManualClock()).authenticate(key);
    expect(principal).toMatchObject({
      kind: "service-key",
      scopes: ["read", "command"],
      types: ["thermostat"],
      idPrefixes: ["plant-a-"],
    });
    expect(limits).toMatchObject({ ratePerSecond: 5 });

    const listed: string[] = [];
    listKeysCommand({ file, json: true }, (l) => listed.push(l));
    const record = JSON.parse(listed[0] ?? "{}") as Record<string, unknown>;
    expect(record["id"]).toBe(principal.id);
    expect(record).not.toHaveProperty("sha256");

    revokeKeyCommand(principal.id, { file }, () => {});
    expect(() => new ApiKeys(file, new ManualClock()).authenticate(key)).toThrow("was revoked");
  });

  it("refuses unknown scopes and bad numbers by name", () => {
    expect(() => createKeyCommand({ file, scopes: "read,root" }, () => {})).toThrow('unknown scope "root"');
    expect(() => createKeyCommand({ file, scopes: "" }, () => {})).toThrow("at least one");
    expect(() => createKeyCommand({ file, scopes: "read", rate: "-1" }, () => {})).toThrow("--rate");
    expect(() => revokeKeyCommand("ffffffffffff", { file }, () => {})).toThrow("no API key");
  });
});
