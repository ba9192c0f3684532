/**
 * The nats-server crash scenario, shared by its test (two crashes, asserted) and `bench:chaos`
 * (more crashes, longer phases, printed): a node (memory store) and devices on a nats-server of
 * their own with JetStream file storage; while the devices report, the server is killed with
 * SIGKILL and restarted on the same port and storage, `crashes` times. The node and the devices
 * reconnect on their own. Returns the accounting of every acknowledged report.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeviceClient } from "doppel/device";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../nats/harness.ts";
import {
  type Accounting,
  account,
  type DeviceRun,
  readLogs,
  reportedValue,
  reportUntil,
} from "./exactly-once.ts";
import { startOwnNats } from "./own-nats.ts";

export interface NatsCrashOptions {
  readonly devices: number;
  readonly crashes: number;
  /** Reports acknowledged (over all devices) before each crash and after each restart. */
  readonly reportsPerPhase: number;
}

export interface NatsCrashResult extends Accounting {
  readonly scenario: string;
  readonly quarantined: number;
  /** Reports the devices had to send again (server down or ack late). */
  readonly resent: number;
  /** Times the devices' connection saw the server go away. */
  readonly disconnects: number;
  /** Messages JetStream delivered to the node more than once. */
  readonly redelivered: number;
  readonly seconds: number;
  /** Twins not at their device's last acknowledged report after the wait. */
  readonly behind: readonly { twin: string; at: unknown; last: number | undefined }[];
}

export async function runNatsCrashScenario(options: NatsCrashOptions): Promise<NatsCrashResult> {
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), "doppel-nats-crash-"));
  const nats = await startOwnNats(join(dir, "jetstream"));
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
    { length: options.devices },
    (_, i) => new DeviceClient({ transport: wire, type: "thermostat", id: `nc${i}`, ackTimeoutMs: 2000 }),
  );
  const runs: DeviceRun[] = devices.map((d) => ({ ref: d.ref, acked: [], resent: 0 }));
  let running = true;
  const load = devices.map((d, i) => reportUntil(d, runs[i] as DeviceRun, () => running));
  const ackedSoFar = () => runs.reduce((n, r) => n + r.acked.length, 0);
  const phase = async (what: string) => {
    const from = ackedSoFar();
    await eventually(
      () => (ackedSoFar() >= from + options.reportsPerPhase ? true : undefined),
      what,
      120_000,
    );
  };
  try {
    for (let crash = 0; crash < options.crashes; crash++) {
      await phase("reports acknowledged before the crash");
      await nats.kill();
      await nats.restart();
      await phase("reports acknowledged after the restart");
    }
    running = false;
    await Promise.all(load);
    // Every acknowledged report is stored; wait until each twin has applied its device's last.
    const finals = new Map<string, unknown>();
    const keyOf = (run: DeviceRun) => `${run.ref.type}/${run.ref.id}`;
    // (A twin still short of it after the wait is counted in `wrongFinal`, not thrown: the bench
    // reports it, the test asserts it is zero.)
    await eventually(
      async () => {
        for (const run of runs) {
          const view = await node.twins.get(run.ref).catch(() => undefined);
          finals.set(keyOf(run), reportedValue(view?.reported["temperature"]));
        }
        return runs.every((r) => finals.get(keyOf(r)) === r.acked.at(-1)) ? true : undefined;
      },
      "every twin at its device's last report",
      120_000,
    ).catch(() => undefined);
    const behind = runs
      .filter((r) => finals.get(keyOf(r)) !== r.acked.at(-1))
      .map((r) => ({ twin: keyOf(r), at: finals.get(keyOf(r)), last: r.acked.at(-1) }));
    const { logs, quarantined } = await readLogs(
      runs,
      // The store itself: a long run outgrows the API's history page.
      (ref) => store.readEvents(ref, 0),
      async (ref) => (await store.loadTwin(ref)).quarantine !== undefined,
    );
    return {
      scenario: `nats-kill-9 x${options.crashes}`,
      ...account(runs, logs, finals),
      quarantined,
      resent: runs.reduce((n, r) => n + r.resent, 0),
      behind,
      disconnects,
      redelivered: node.devices.durable?.stats.redelivered ?? 0,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    running = false;
    await Promise.allSettled(load);
    for (const d of devices) await d.close();
    await wire.close();
    await node.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
