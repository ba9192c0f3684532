import { describe, expect, it } from "vitest";
import { buildConfig } from "../../runtime/cli/start-config.ts";
import { edgeStreamConfig, rawStreamConfig } from "../../runtime/devices/edge/edge-stream.ts";
import { leafServerConfig } from "../../runtime/devices/edge/leaf-config.ts";
import { DEFAULT_STREAM, ingressStreamConfig } from "../../runtime/devices/ingress/stream-config.ts";
import { compileConfig } from "../../runtime/node/options.ts";

describe("edge configuration", () => {
  it("doppel start --edge --upstream sets the edge section; env DOPPEL_EDGE too", () => {
    const config = buildConfig(
      { edge: "plant-a", upstream: "nats://cloud:7422", nats: "nats://127.0.0.1:4222" },
      {},
    );
    expect(config.edge).toEqual({ name: "plant-a", upstream: "nats://cloud:7422" });
    expect(buildConfig({}, { DOPPEL_EDGE: "ship-1" }).edge).toEqual({ name: "ship-1" });
    expect(() => buildConfig({ upstream: "nats://cloud:7422" }, {})).toThrow(/give --edge NAME/);
  });

  it("refuses an edge without nats, or with a name that is no JetStream domain", () => {
    expect(() => compileConfig({ edge: { name: "plant-a" } })).toThrow(/an edge node needs nats/);
    expect(() => compileConfig({ nats: { servers: "nats://x:4222" }, edge: { name: "plant.a" } })).toThrow(
      /edge\.name/,
    );
    const config = compileConfig({ nats: { servers: "nats://x:4222" }, edge: { name: "plant-a" } });
    expect(config.edge).toMatchObject({
      hubDomain: "cloud",
      buffer: { stream: "DOPPEL_EDGE", discard: "new" },
    });
  });

  it("the edge stream keeps limits retention with the configured discard policy", () => {
    const config = edgeStreamConfig({
      name: "DOPPEL_EDGE",
      maxBytes: 4096,
      maxAgeMs: 60_000,
      maxMsgSize: 1024,
      duplicateWindowMs: 1000,
      discard: "old",
    });
    expect(config).toMatchObject({ retention: "limits", discard: "old", max_bytes: 4096 });
  });

  it("a thick edge splits the device subjects by type: its node's ingress takes the edge twins', the forwarding streams the rest", () => {
    const settings = {
      name: "DOPPEL_EDGE",
      maxBytes: 4096,
      maxAgeMs: 60_000,
      maxMsgSize: 1024,
      duplicateWindowMs: 1000,
      discard: "new" as const,
    };
    expect(edgeStreamConfig({ ...settings, types: ["pump"] }).subjects).toEqual([
      "doppel.dev.pump.*.reported",
      "doppel.fwd.*.*.telemetry",
    ]);
    expect(rawStreamConfig({ ...settings, name: "DOPPEL_EDGE_RAW", types: ["pump"] }).subjects).toEqual([
      "doppel.dev.pump.*.telemetry",
    ]);
    // Every type runs at the edge: the raw stream takes only its own name (no device subject).
    expect(rawStreamConfig({ ...settings, name: "DOPPEL_EDGE_RAW", types: [] }).subjects).toEqual([
      "DOPPEL_EDGE_RAW",
    ]);
    const ingress = ingressStreamConfig({ ...DEFAULT_STREAM, types: ["thermostat"] }, 4);
    expect(ingress.subjects).toEqual([
      "doppel.dev.thermostat.*.reported",
      "doppel.dev.thermostat.*.telemetry",
    ]);
    // A thin edge forwards every type.
    expect(edgeStreamConfig(settings).subjects).toEqual([
      "doppel.dev.*.*.reported",
      "doppel.fwd.*.*.telemetry",
    ]);
  });

  it("the leaf server's configuration: own domain, credentials in the remote, reports not exported", () => {
    const text = leafServerConfig({
      edge: "plant-a",
      host: "127.0.0.1",
      port: 4222,
      storeDir: "/var/lib/edge",
      upstream: "nats://cloud:7422",
      credentials: { user: "plant-a", pass: "p@ss word" },
    });
    expect(text).toContain('domain: "plant-a"');
    expect(text).toContain('url: "nats://plant-a:p%40ss%20word@cloud:7422"');
    expect(text).toContain(
      'deny_exports: ["doppel.dev.*.*.reported", "doppel.dev.*.*.telemetry", "doppel.revocations.>"]',
    );
    // What the edge's streams take comes from the edge's own server only.
    expect(text).toContain(
      'deny_imports: ["doppel.dev.*.*.reported", "doppel.dev.*.*.telemetry", "doppel.fwd.>", "doppel.edge-log.>", "doppel.revocations.>"]',
    );
    expect(
      leafServerConfig({
        edge: "e",
        host: "h",
        port: 1,
        storeDir: "d",
        upstream: "tls://c:7422",
        credentials: { credsFile: "/e.creds" },
      }),
    ).toContain('credentials: "/e.creds"');
  });
});
