import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  createKeyCommand,
  listKeysCommand,
  revokeKeyCommand,
  updateKeyCommand,
} from "../../runtime/cli/keys.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import { ApiKeys } from "../../runtime/security/api-keys.ts";

describe("doppel keys", () => {
  const dir = mkdtempSync(join(tmpdir(), "doppel-keys-"));
  const file = join(dir, "sub", "keys.json");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("creates a key shown once, stores only its hash, lists and revokes it", async () => {
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
    await listKeysCommand({ file, json: true }, (l) => listed.push(l));
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
    expect(() => createKeyCommand({ file, scopes: "write", maxTwins: "1.5" }, () => {})).toThrow(
      "--max-twins must be a whole number",
    );
    expect(() => createKeyCommand({ file, scopes: "write", maxTwins: "-1" }, () => {})).toThrow(
      "--max-twins",
    );
  });

  it("keeps a key's twin quota with it and lists twins created/quota (0 before the store exists)", async () => {
    const own = join(dir, "quota-keys.json");
    const lines: string[] = [];
    createKeyCommand({ file: own, scopes: "write", maxTwins: "2" }, (l) => lines.push(l));
    createKeyCommand({ file: own, scopes: "read" }, () => {});
    const { limits } = new ApiKeys(own, new ManualClock()).authenticate(lines[0] ?? "");
    expect(limits).toEqual({ maxTwins: 2 });
    const listed: string[] = [];
    await listKeysCommand({ file: own, data: join(dir, "no-node-yet") }, (l) => listed.push(l));
    const [header, quota, plain] = (listed[0] ?? "").split("\n");
    expect(header).toMatch(/RATE\s+TWINS\s+CREATED/);
    expect(quota).toMatch(/\s0\/2\s/);
    expect(plain).toMatch(/write|read/);
    const json: string[] = [];
    await listKeysCommand({ file: own, data: join(dir, "no-node-yet"), json: true }, (l) => json.push(l));
    expect(JSON.parse(json[0] ?? "{}")).toMatchObject({ limits: { maxTwins: 2 }, twinsCreated: 0 });
    expect(JSON.parse(json[1] ?? "{}")).not.toHaveProperty("twinsCreated");
  });

  it("updates a key in place: the same key, new scopes, restrictions and limits; none removes one", () => {
    const own = join(dir, "update-keys.json");
    const lines: string[] = [];
    createKeyCommand({ file: own, scopes: "read", types: "thermostat", rate: "5", maxTwins: "2" }, (l) =>
      lines.push(l),
    );
    const key = lines[0] ?? "";
    const keys = new ApiKeys(own, new ManualClock());
    const { id } = keys.authenticate(key).principal as { id: string };

    const said: string[] = [];
    updateKeyCommand(id, { file: own, scopes: "read,command", types: "none", maxTwins: "5" }, (l) =>
      said.push(l),
    );
    expect(said[0]).toBe(
      `updated ${id}: scopes read,command; types *; prefixes *; rate 5/s; max twins 5 (nodes apply it within a second)`,
    );
    const updated = new ApiKeys(own, new ManualClock()).authenticate(key);
    expect(updated.principal).toEqual({ kind: "service-key", id, scopes: ["read", "command"] });
    expect(updated.limits).toEqual({ ratePerSecond: 5, maxTwins: 5 });

    updateKeyCommand(id, { file: own, rate: "none", prefix: "plant-b-", description: "line 2" }, () => {});
    const json: string[] = [];
    updateKeyCommand(id, { file: own, maxTwins: "none", json: true }, (l) => json.push(l));
    const record = JSON.parse(json[0] ?? "{}") as Record<string, unknown>;
    expect(record).toMatchObject({ id, idPrefixes: ["plant-b-"], description: "line 2" });
    expect(record).not.toHaveProperty("limits");
    expect(record).not.toHaveProperty("sha256");
    expect(new ApiKeys(own, new ManualClock()).authenticate(key).limits).toBeUndefined();
  });

  it("refuses an update that names nothing, an unknown or revoked key, and bad values, changing nothing", () => {
    const own = join(dir, "update-refused.json");
    const lines: string[] = [];
    createKeyCommand({ file: own, scopes: "write", maxTwins: "1" }, (l) => lines.push(l));
    const { id } = new ApiKeys(own, new ManualClock()).authenticate(lines[0] ?? "").principal as {
      id: string;
    };
    const before = readFileSync(own, "utf8");
    expect(() => updateKeyCommand(id, { file: own }, () => {})).toThrow("nothing to change");
    expect(() => updateKeyCommand("ffffffffffff", { file: own, rate: "1" }, () => {})).toThrow("no API key");
    expect(() => updateKeyCommand(id, { file: own, scopes: "root" }, () => {})).toThrow(
      'unknown scope "root"',
    );
    expect(() => updateKeyCommand(id, { file: own, maxTwins: "-3" }, () => {})).toThrow("--max-twins");
    expect(() => updateKeyCommand(id, { file: own, rate: "0" }, () => {})).toThrow("--rate");
    expect(() => updateKeyCommand(id, { file: own, types: "," }, () => {})).toThrow("--types needs");
    expect(() => updateKeyCommand(id, { file: own, description: "x".repeat(201) }, () => {})).toThrow(
      `API key ${id}: description`,
    );
    expect(readFileSync(own, "utf8")).toBe(before);
    revokeKeyCommand(id, { file: own }, () => {});
    expect(() => updateKeyCommand(id, { file: own, maxTwins: "9" }, () => {})).toThrow(
      "was revoked; create a new key instead",
    );
  });
});
