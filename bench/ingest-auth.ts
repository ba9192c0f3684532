/**
 * Ingest with device security on and off: what per-device credentials (Doppel as the NATS auth
 * callout) and TLS cost, at connect time and per report. Three setups, each a nats-server of its
 * own (`test/integration/security/secured-nats.ts`, the same binary and JetStream settings, fsync
 * on every write) and a Doppel node of its own (the real CLI, SQLite with fsync on every commit,
 * 256 shards), run in the same process tree, interleaved round by round (A B C, A B C, ...):
 *
 *   plain        open server, no accounts, plaintext: devices connect without a credential
 *   callout      auth callout: each device connects with its own user/password, which the node
 *                checks (SHA-256) and answers with a signed user JWT of exactly its subjects;
 *                the node connects as an `auth_users` user
 *   callout+tls  the same, and the server accepts TLS only: devices, the node's ingress
 *                connection and its callout and system connections all use TLS (a test CA)
 *
 * Every side does the same work with the same client code: `DEVICES` devices, each its own
 * `DeviceClient` connection, report JSON patches that the node applies to thermostat twins.
 * Each round, for each setup:
 *   1. **connect**: all devices connect, `CONNECT_CONCURRENCY` at a time (devices/s, and each
 *      connect's latency: TCP, TLS handshake, CONNECT, the callout's round trip, PONG; a connect
 *      the server refuses because the callout did not answer within its 2 s is tried again, and
 *      counted, up to `CONNECT_ATTEMPTS` times);
 *   2. **throughput**: `REPORTS` reports over those connections, `WINDOW` unacknowledged at once;
 *      the clock stops when the node has consumed the whole stream (reports/s), and each
 *      report's JetStream ack latency is recorded (device-seen, queueing included);
 *   3. **latency**: `PROBES` probe reports (publish → its value in the store's view of the twin,
 *      read by this process from the node's SQLite file) under a background load of half the
 *      plain setup's first-round throughput, offered to every setup alike;
 *   4. the devices disconnect.
 *
 *   npm run bench:ingest-auth     (BENCH_QUICK=1 for a short run; BENCH_ROUNDS, default 3;
 *                                  needs .infra/bin/nats-server: scripts/infra/nats.sh up)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsTransport } from "../cluster/transport/nats.ts";
import { DeviceCredentials } from "../runtime/devices/auth/device-credentials.ts";
import { DeviceClient } from "../runtime/devices/client/device-client.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import { type SecuredNats, startSecuredNats } from "../test/integration/security/secured-nats.ts";
import { makeCertificates } from "../test/security/certificates.ts";
import {
  type BenchNode,
  histogram,
  loadAverage,
  note,
  percentiles,
  report,
  startDoppelNode,
  stopProcess,
  streamEmpty,
  summary,
  windowed,
} from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const DEVICES = quick ? 100 : 300;
const CONNECT_CONCURRENCY = 10;
/** Attempts per device connect: nats-server refuses a client whose callout is not answered within 2 s. */
const CONNECT_ATTEMPTS = 5;
const REPORTS = quick ? 5_000 : 20_000;
const WINDOW = 500;
const PROBES = quick ? 50 : 150;
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? (quick ? 2 : 3));
const SHARDS = 256;
const STREAM = "DOPPEL_INGRESS";

type Histogram = ReturnType<typeof histogram>;

interface Setup {
  readonly name: "plain" | "callout" | "callout+tls";
  readonly nats: SecuredNats;
  readonly node: BenchNode;
  readonly dataDir: string;
  /** Device passwords by id (callout setups). */
  readonly passwords: ReadonlyMap<string, string> | undefined;
  readonly deviceTls: { readonly caFile: string } | undefined;
  readonly admin: NatsTransport;
  readonly reader: SqliteEventStore;
  readonly figures: {
    connectRates: number[];
    connect: Histogram;
    /** Connects refused (callout unanswered within the server's 2 s) and tried again. */
    connectRetries: number;
    reportRates: number[];
    ack: Histogram;
    latency: Histogram;
    latencyRounds: ReturnType<typeof percentiles>[];
  };
}

const deviceId = (i: number) => `d-${i}`;
const PROBE = "probe";

async function startSetup(name: Setup["name"], certs: ReturnType<typeof makeCertificates>): Promise<Setup> {
  const secured = name !== "plain";
  const tls = name === "callout+tls";
  const nats = await startSecuredNats({
    open: !secured,
    syncAlways: true,
    ...(tls ? { tls: certs.server } : {}),
  });
  const dataDir = mkdtempSync(join(tmpdir(), `doppel-bench-ingest-auth-${name.replace("+", "-")}-`));
  let passwords: Map<string, string> | undefined;
  const nodeTls = tls ? { tls: { ca: certs.ca } } : {};
  let natsConfig: Record<string, unknown> = { servers: nats.url, ...nodeTls };
  if (secured) {
    const credentials = new DeviceCredentials(join(dataDir, "device-credentials.json"));
    passwords = new Map();
    for (const id of [...Array.from({ length: DEVICES }, (_, i) => deviceId(i)), PROBE])
      passwords.set(id, credentials.provision({ type: "thermostat", id }).password);
    natsConfig = {
      ...natsConfig,
      credentials: nats.node,
      deviceAuth: {
        issuerSeed: nats.issuerSeed,
        account: nats.account,
        credentials: nats.auth,
        system: nats.system,
      },
    };
  }
  let node: BenchNode | undefined;
  try {
    const config = join(dataDir, "config.json");
    writeFileSync(config, JSON.stringify({ nats: natsConfig }));
    node = await startDoppelNode([
      "bin/doppel.js",
      "start",
      "--config",
      config,
      "--store",
      "sqlite",
      "--data",
      dataDir,
      "--shards",
      String(SHARDS),
    ]);
    // The bench's own connection (as a node user) watches the stream's depth.
    const admin = await NatsTransport.connect({
      servers: nats.url,
      name: "bench-admin",
      ...(secured ? { credentials: nats.node } : {}),
      ...(tls ? { tls: { caFile: certs.ca } } : {}),
    });
    return {
      name,
      nats,
      node,
      dataDir,
      passwords,
      deviceTls: tls ? { caFile: certs.ca } : undefined,
      admin,
      reader: new SqliteEventStore({ path: join(dataDir, "doppel.db") }),
      figures: {
        connectRates: [],
        connect: histogram(),
        connectRetries: 0,
        reportRates: [],
        ack: histogram(),
        latency: histogram(),
        latencyRounds: [],
      },
    };
  } catch (error) {
    if (node) await stopProcess(node.child);
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
}

async function connectDevice(setup: Setup, id: string): Promise<DeviceClient> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(setup, id);
    } catch (error) {
      if (attempt === CONNECT_ATTEMPTS || !/Authorization Violation/.test((error as Error).message))
        throw error;
      setup.figures.connectRetries++;
    }
  }
}

function connectOnce(setup: Setup, id: string): Promise<DeviceClient> {
  const pass = setup.passwords?.get(id);
  return DeviceClient.connect({
    servers: setup.nats.url,
    type: "thermostat",
    id,
    waitOnFirstConnect: false,
    ackTimeoutMs: 60_000,
    ...(pass === undefined ? {} : { credentials: { user: `thermostat/${id}`, pass } }),
    ...(setup.deviceTls ? { tls: setup.deviceTls } : {}),
  });
}

/** Connects every device (and the probe), `CONNECT_CONCURRENCY` at a time: devices/s. */
async function connectAll(
  setup: Setup,
  into: Histogram | undefined,
): Promise<{ devices: DeviceClient[]; rate: number }> {
  const devices: DeviceClient[] = new Array(DEVICES + 1);
  const t0 = performance.now();
  await windowed(DEVICES + 1, CONNECT_CONCURRENCY, async (i) => {
    const start = performance.now();
    devices[i] = await connectDevice(setup, i === DEVICES ? PROBE : deviceId(i));
    into?.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
  });
  return { devices, rate: Math.round((DEVICES + 1) / ((performance.now() - t0) / 1000)) };
}

async function jsm(setup: Setup) {
  return jetstreamManager(setup.admin.connection);
}

/** `total` reports over the devices' connections, `WINDOW` at once; reports/s once the stream is consumed. */
async function throughput(setup: Setup, devices: DeviceClient[], total: number, acks: Histogram | undefined) {
  const manager = await jsm(setup);
  const t0 = performance.now();
  await windowed(total, WINDOW, async (i) => {
    const start = performance.now();
    await devices[i % DEVICES]!.report({ temperature: 15 + (i % 200) / 10, heating: i % 2 === 0 });
    acks?.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)));
  });
  await streamEmpty(manager, STREAM);
  return Math.round(total / ((performance.now() - t0) / 1000));
}

/** Probe reports (publish → visible in the store) under `rate` background reports/s. */
async function latency(setup: Setup, devices: DeviceClient[], rate: number) {
  let stop = false;
  let i = 0;
  const background = (async () => {
    while (!stop) {
      const tick = performance.now();
      await Promise.all(
        Array.from({ length: Math.max(1, Math.round(rate / 10)) }, () =>
          devices[i++ % DEVICES]!.report({ temperature: 20 + (i % 50) / 10 }),
        ),
      );
      const wait = 100 - (performance.now() - tick);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  const round = histogram();
  const probe = devices[DEVICES]!;
  for (let p = 0; p < PROBES; p++) {
    const value = Math.round((10 + (p % 100) / 10) * 100) / 100 + (p % 2 ? 0.001 : 0.002);
    const start = performance.now();
    await probe.report({ temperature: value });
    for (;;) {
      const view = await setup.reader.readView({ type: "thermostat", id: PROBE });
      if (view?.reported["temperature"] === value) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const us = Math.max(1, Math.round((performance.now() - start) * 1000));
    round.recordValue(us);
    setup.figures.latency.recordValue(us);
  }
  stop = true;
  await background;
  await streamEmpty(await jsm(setup), STREAM);
  return percentiles(round);
}

async function closeAll(devices: DeviceClient[]): Promise<void> {
  await Promise.all(devices.map((device) => device.close()));
}

const certs = makeCertificates();
const setups: Setup[] = [];
try {
  for (const name of ["plain", "callout", "callout+tls"] as const) {
    note(`${name}: nats-server and node...`);
    setups.push(await startSetup(name, certs));
  }
  note(`warm-up: each device connects and reports once on each side (${DEVICES} twins activated)...`);
  for (const setup of setups) {
    const { devices } = await connectAll(setup, undefined);
    await throughput(setup, devices, DEVICES, undefined);
    await closeAll(devices);
  }
  let backgroundRate = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const setup of setups) {
      const f = setup.figures;
      const { devices, rate: connectRate } = await connectAll(setup, f.connect);
      f.connectRates.push(connectRate);
      const rate = await throughput(setup, devices, REPORTS, f.ack);
      f.reportRates.push(rate);
      if (backgroundRate === 0) backgroundRate = Math.max(10, Math.round(rate / 2));
      const lat = await latency(setup, devices, backgroundRate);
      f.latencyRounds.push(lat);
      await closeAll(devices);
      note(
        `round ${round + 1} ${setup.name}: connect ${connectRate} devices/s; ${rate} reports/s; publish → in the store p50 ${lat.p50} ms, p99 ${lat.p99} ms (load ${loadAverage()})`,
      );
    }
  }
  const plain = setups[0]!.figures;
  const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
  const results = Object.fromEntries(
    setups.map((setup) => {
      const f = setup.figures;
      return [
        setup.name,
        {
          connectsPerSecond: summary(f.connectRates),
          connectRounds: f.connectRates,
          connectMs: percentiles(f.connect),
          connectRetries: f.connectRetries,
          reportsPerSecond: summary(f.reportRates),
          reportRounds: f.reportRates,
          reportAckMs: percentiles(f.ack),
          latencyMs: percentiles(f.latency),
          latencyRounds: f.latencyRounds,
          vsPlain: {
            connects: ratio(summary(f.connectRates).median, summary(plain.connectRates).median),
            connectRounds: f.connectRates.map((r, i) => ratio(r, plain.connectRates[i]!)),
            reports: ratio(summary(f.reportRates).median, summary(plain.reportRates).median),
            reportRounds: f.reportRates.map((r, i) => ratio(r, plain.reportRates[i]!)),
          },
        },
      ];
    }),
  );
  for (const setup of setups) {
    const r = results[setup.name]!;
    note(
      `  ${setup.name}: connect median ${r.connectsPerSecond.median}/s (×${r.vsPlain.connects}, p99 ${r.connectMs.p99} ms, ${r.connectRetries} retried), reports median ${r.reportsPerSecond.median}/s (×${r.vsPlain.reports})`,
    );
  }
  report("ingest-auth", {
    command: [
      ...(quick ? ["BENCH_QUICK=1"] : []),
      ...(process.env["BENCH_ROUNDS"] === undefined ? [] : [`BENCH_ROUNDS=${ROUNDS}`]),
      "npm run bench:ingest-auth",
    ].join(" "),
    setup: {
      nats: "nats-server v2.15.3 per setup (test/integration/security/secured-nats.ts), JetStream file store, sync_interval always, loopback",
      store: "SqliteEventStore, WAL, synchronous=FULL, each node its own file",
      shards: SHARDS,
      devices: DEVICES,
      connectConcurrency: CONNECT_CONCURRENCY,
      reportsPerRound: REPORTS,
      window: WINDOW,
      rounds: ROUNDS,
      probesPerRound: PROBES,
      backgroundReportsPerSecond: backgroundRate,
      tls: "RSA 2048 server certificate from a test CA (openssl); devices verify it; no client certificates",
      latency:
        "probe report (JetStream ack) → its value in the store's view (readView polled by the bench process)",
      reportAck:
        "each report's DeviceClient.report() → JetStream ack, with WINDOW outstanding (queueing included)",
      load: loadAverage(),
    },
    results,
  });
} finally {
  for (const setup of setups) {
    await stopProcess(setup.node.child);
    await setup.admin.close().catch(() => undefined);
    await setup.reader.close();
    await setup.nats.stop();
    rmSync(setup.dataDir, { recursive: true, force: true });
  }
  certs.remove();
}
process.exit(0);
