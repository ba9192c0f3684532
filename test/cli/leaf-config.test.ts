import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccount } from "@nats-io/nkeys";
import { afterAll, describe, expect, it } from "vitest";
import { leafConfigCommand } from "../../runtime/cli/leaf-config-command.ts";
import { leafServerConfig } from "../../runtime/devices/edge/leaf-config.ts";

const dir = mkdtempSync(join(tmpdir(), "doppel-leaf-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const issuer = createAccount();
const edgeConfig = {
  nats: {
    servers: "nats://127.0.0.1:4222",
    credentials: { user: "edge-node", pass: "node-pass" },
    deviceAuth: {
      issuerSeed: new TextDecoder().decode(issuer.getSeed()),
      credentials: { user: "edge-auth", pass: "auth-pass" },
      system: { user: "edge-sys", pass: "sys-pass" },
    },
  },
  edge: { name: "plant-a", upstream: "nats://plant-a:leaf@cloud:7422" },
};

function run(flags: Parameters<typeof leafConfigCommand>[0]): string {
  const lines: string[] = [];
  leafConfigCommand(flags, (line) => lines.push(line), {});
  return lines.join("\n");
}

function configFile(name: string, config: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe("doppel edge leaf-config", () => {
  it("with an edge node's nats.deviceAuth the leaf server sends devices to the edge node's callout", () => {
    const text = run({ config: configFile("edge.json", edgeConfig), mqtt: "127.0.0.1:1883" });
    expect(text).toContain('server_name: "plant-a"');
    expect(text).toContain('url: "nats://plant-a:leaf@cloud:7422"');
    // The remote binds the devices' account: its subjects cross the link, the callout's stay local.
    expect(text).toContain('account: "DOPPEL"');
    expect(text).toContain('AUTH { users: [ { user: "edge-auth", password: "auth-pass" } ] }');
    expect(text).toContain(
      'DOPPEL { jetstream: enabled, users: [ { user: "edge-node", password: "node-pass" } ] }',
    );
    expect(text).toContain('SYS { users: [ { user: "edge-sys", password: "sys-pass" } ] }');
    expect(text).toContain("system_account: SYS");
    expect(text).toContain(`issuer: "${issuer.getPublicKey()}"`);
    expect(text).toContain('auth_users: [ "edge-node", "edge-auth", "edge-sys" ]');
    expect(text).toContain('mqtt { listen: "127.0.0.1:1883" }');
    // Flags win over the configuration.
    expect(run({ config: configFile("edge2.json", edgeConfig), edge: "plant-b" })).toContain(
      'server_name: "plant-b"',
    );
  });

  it("without deviceAuth no accounts; a config that cannot name the users is refused by field", () => {
    const plain = run({ edge: "plant-a", upstream: "nats://cloud:7422" });
    expect(plain).not.toContain("accounts");
    expect(plain).not.toContain("auth_callout");
    const tokenNode = { ...edgeConfig, nats: { ...edgeConfig.nats, credentials: { token: "t" } } };
    expect(() => run({ config: configFile("token.json", tokenNode) })).toThrow(
      /nats\.credentials must be a user and password/,
    );
    expect(() => run({ edge: "plant-a" })).toThrow(/--upstream is required/);
    expect(() => run({ edge: "plant-a", upstream: "nats://c:7422", listen: "4222" })).toThrow(
      /--listen "4222": must be host:port/,
    );
  });

  it("refuses a devices' account named like the callout's or the system's, and shared user names", () => {
    const base = {
      edge: "e",
      host: "127.0.0.1",
      port: 4222,
      storeDir: "d",
      upstream: "nats://c:7422",
    };
    const users = {
      issuer: issuer.getPublicKey(),
      node: { user: "n", pass: "1" },
      callout: { user: "a", pass: "2" },
    };
    expect(() => leafServerConfig({ ...base, deviceAuth: { ...users, account: "AUTH" } })).toThrow(
      /cannot be named AUTH/,
    );
    expect(() =>
      leafServerConfig({
        ...base,
        deviceAuth: { ...users, account: "DOPPEL", callout: { user: "n", pass: "3" } },
      }),
    ).toThrow(/must differ/);
  });
});
