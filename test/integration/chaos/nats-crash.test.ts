import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceClient } from "doppel/device";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
import { account, type DeviceRun, readLogs, reportUntil } from "./exactly-once.ts";
import { type OwnNats, startOwnNats } from "./own-nats.ts";

const DEVICES = 10;

/**
 * kill -9 of nats-server (JetStream file storage) while devices report, restarted on the same
 * port and storage, twice. The node and the devices reconnect on their own. Every report a device
 * saw acknowledged must be applied exactly once and in order; each twin ends at its device's last
 * report; no twin is quarantined.
 */
describe("kill -9 of nats-server under load", () => {
  let dir: string;
  let nats: OwnNats;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "doppel-nats-crash-"));
    nats = await startOwnNats(join(dir, "jetstream"));
  });
  afterAll(async () => {
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("loses nothing acknowledged, applies nothing twice or out of order, twice over", async () => {
    const store = new MemoryEventStore();
    const node = await DoppelNode.start(
      {
        nodeId: "chaos-nats",
        store: { kind: "memory" },
        shards: 4,
        log: { level: "silent" },
        grpc: { listen: "127.0.0.1:0" }, // a free port: never collide with another node on this machine
        nats: { servers: nats.url, consumer: { ackWait: "2s", maxAckPending: 256, maxInFlightPerTwin: 8 } },
      },
      { twins: [Thermostat, Pump], store, logger: silentLogger() },
    );
    const wire = await NatsTransport.connect({
      servers: nats.url,
      name: "chaos-devices",
      reconnectTimeWaitMs: 100,
    });
    let disconnects = 0;
    wire.onConnectionChange?.((state) => {
      if (state === "disconnected") disconnects++;
    });
    const devices = Array.from(
      { length: DEVICES },
      (_, i) => new DeviceClient({ transport: wire, type: "thermostat", id: `nc${i}`, ackTimeoutMs: 2000 }),
    );
    const runs: DeviceRun[] = devices.map((d) => ({ ref: d.ref, acked: [], resent: 0 }));
    let running = true;
    const load = devices.map((d, i) => reportUntil(d, runs[i]!, () => running));
    const ackedSoFar = () => runs.reduce((n, r) => n + r.acked.length, 0);
    try {
      for (let crash = 0; crash < 2; crash++) {
        const before = ackedSoFar();
        await eventually(
          () => (ackedSoFar() >= before + 100 ? true : undefined),
          "reports acknowledged before the crash",
          60_000,
        );
        await nats.kill();
        await nats.restart();
        const after = ackedSoFar();
        await eventually(
          () => (ackedSoFar() >= after + 100 ? true : undefined),
          "reports acknowledged after the restart",
          90_000,
        );
      }
      running = false;
      await Promise.all(load);
      // Every acknowledged report is stored; wait until each twin has applied its device's last.
      const finals = new Map<string, unknown>();
      await eventually(
        async () => {
          for (const run of runs) {
            const view = await node.twins.get(run.ref).catch(() => undefined);
            finals.set(`${run.ref.type}/${run.ref.id}`, view?.reported["temperature"]);
          }
          return runs.every((r) => finals.get(`${r.ref.type}/${r.ref.id}`) === r.acked.at(-1))
            ? true
            : undefined;
        },
        "every twin at its device's last report",
        90_000,
      );
      const { logs, quarantined } = await readLogs(
        runs,
        (ref) => node.twins.history(ref, { limit: 10_000 }),
        async (ref) => (await store.loadTwin(ref)).quarantine !== undefined,
      );
      const result = account(runs, logs, finals);
      const resent = runs.reduce((n, r) => n + r.resent, 0);
      const redelivered = node.devices.durable?.stats.redelivered ?? 0;
      console.log(
        JSON.stringify({
          scenario: "nats-kill-9 x2",
          ...result,
          quarantined,
          resent,
          disconnects,
          redelivered,
        }),
      );
      // The faults happened: the devices lost their server twice.
      expect(disconnects).toBeGreaterThanOrEqual(2);
      expect(result.acknowledged).toBeGreaterThanOrEqual(400);
      expect({ ...result, quarantined }).toEqual({
        acknowledged: result.acknowledged,
        lost: 0,
        superseded: 0,
        duplicated: 0,
        outOfOrder: 0,
        wrongFinal: 0,
        quarantined: 0,
      });
    } finally {
      running = false;
      await Promise.allSettled(load);
      for (const d of devices) await d.close();
      await wire.close();
      await node.stop();
    }
  }, 300_000);
});
