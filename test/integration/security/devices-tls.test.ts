/**
 * Device credentials over TLS: a nats-server that accepts TLS clients only, with the auth callout.
 * The node's ingress connection and its callout and system connections all use `nats.tls` (before,
 * the callout's went plaintext and the node could not start); a device connects with its
 * credential over TLS and its report is applied; a device without the CA is refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { DeviceClient } from "../../../runtime/devices/client/device-client.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { makeCertificates, type TestCertificates } from "../../security/certificates.ts";
import { eventually } from "../../support/eventually.ts";
import { type SecuredNats, startSecuredNats } from "./secured-nats.ts";

describe("device credentials through the auth callout, over TLS", () => {
  let certs: TestCertificates;
  let nats: SecuredNats;
  let dir: string;
  let node: DoppelNode;
  let password: string;

  beforeAll(async () => {
    certs = makeCertificates();
    nats = await startSecuredNats({ tls: certs.server });
    dir = mkdtempSync(join(tmpdir(), "doppel-secdev-tls-"));
    password = new DeviceCredentials(join(dir, "device-credentials.json")).provision({
      type: "thermostat",
      id: "t1",
    }).password;
    node = await DoppelNode.start(
      {
        nodeId: "secured-tls",
        dataDir: dir,
        store: { kind: "memory" },
        grpc: { listen: false },
        shards: 4,
        log: { level: "silent" },
        nats: {
          servers: nats.url,
          credentials: nats.node,
          tls: { ca: certs.ca },
          stream: { maxBytes: 64 * 1024 * 1024 },
          deviceAuth: {
            issuerSeed: nats.issuerSeed,
            account: nats.account,
            credentials: nats.auth,
            system: nats.system,
          },
        },
      },
      { twins: [Thermostat], logger: silentLogger() },
    );
  });
  afterAll(async () => {
    await node?.stop();
    await nats?.stop();
    certs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a device connects over TLS with its credential and its report is applied", async () => {
    expect(nats.url).toMatch(/^tls:\/\//);
    const device = await DeviceClient.connect({
      servers: nats.url,
      credentials: { user: "thermostat/t1", pass: password },
      tls: { caFile: certs.ca },
      type: "thermostat",
      id: "t1",
      waitOnFirstConnect: false,
    });
    try {
      await device.report({ temperature: 21.5 });
      const view = await eventually(async () => {
        const twin = await node.twins.get({ type: "thermostat", id: "t1" });
        return twin.reported["temperature"] === 21.5 ? twin : undefined;
      }, "t1's report applied");
      expect(view.reported).toEqual({ temperature: 21.5 });
      expect(node.deviceAuth?.stats.allowed).toBeGreaterThanOrEqual(1);
    } finally {
      await device.close();
    }
  });

  it("a device that does not trust the server's CA is refused at the handshake", async () => {
    await expect(
      DeviceClient.connect({
        servers: nats.url,
        credentials: { user: "thermostat/t1", pass: password },
        tls: { caFile: certs.stranger.ca },
        type: "thermostat",
        id: "t1",
        waitOnFirstConnect: false,
      }),
    ).rejects.toThrow(/UNAVAILABLE|cannot connect/i);
  });
});
