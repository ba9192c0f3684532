/**
 * One overload run, shared by the overload test (short, asserts) and `npm run bench:overload`
 * (longer, prints figures): a real node process on real NATS with deliberately small admission
 * bounds, whose gRPC capacity is measured first (a closed loop at the bound that honours
 * `retry-after-ms`), then driven at `factor` × that capacity (an open loop of ReportState calls on
 * several connections) while devices report over JetStream. Throughout, a health check runs on a
 * process of its own and the node's RSS is read from /proc. Afterwards every acknowledged
 * report — each gRPC ReportState answered OK and each device report the stream acknowledged — is
 * looked for in its twin's history (by its message id); a device report (stamped with its
 * device's sequence) may instead be superseded by a later one of its device, and each device's
 * twin must end with its last acknowledged report.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import type { DoppelError } from "../../../runtime/core/errors.ts";
import type { TwinRef } from "../../../runtime/core/ids.ts";
import { DeviceClient } from "../../../runtime/devices/client/device-client.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import type { TwinServiceClient } from "../../../runtime/grpc/generated/doppel/v1/TwinService.ts";
import { loadContract } from "../../../runtime/grpc/proto.ts";
import { jsonToStruct } from "../../../runtime/grpc/struct.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { metricValue } from "../../support/metrics.ts";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const CLI = join(REPO, "runtime/cli/main.ts");

export interface OverloadOptions {
  readonly nats: string;
  /** Store of the node: `sqlite` (in a temporary folder) or a Cassandra store section. */
  readonly store:
    | "sqlite"
    | { kind: "cassandra"; contactPoints: string[]; keyspace: string; [k: string]: unknown };
  /** How long capacity is measured, ms. */
  readonly measureMs: number;
  /** How long the overload lasts, ms. */
  readonly overloadMs: number;
  /** Offered rate as a multiple of the measured capacity (default 5). */
  readonly factor?: number;
  /** The node's gRPC bound (calls in flight); default 16. */
  readonly grpcBound?: number;
  /** Devices reporting over NATS during the overload (default 4), each a burst of 4 reports every `deviceIntervalMs` (default 100). */
  readonly devices?: number;
  readonly deviceIntervalMs?: number;
  /** How long to wait for every acknowledged report to be present afterwards, ms (default 120 s). */
  readonly settleTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface OverloadFigures {
  readonly capacityPerSec: number;
  readonly offeredPerSec: number;
  /** gRPC outcomes during the overload, by status name. */
  readonly grpcOutcomes: Record<string, number>;
  readonly acceptedPerSec: number;
  readonly refusedPerSec: number;
  /** A RESOURCE_EXHAUSTED answer carried a `retry-after-ms` trailer (how many did not). */
  readonly refusedWithoutRetryAfter: number;
  readonly devices: {
    readonly acked: number;
    readonly ackFailures: number;
    /** Throttle errors the devices received on their `.errors` subject. */
    readonly throttleErrors: number;
    /** The node's `doppel_admission_total{class="device",outcome="refused"}` at the end. */
    readonly refusedByNode: number;
  };
  /** Health checks from a process of their own, from before the capacity measurement to the end. */
  readonly health: HealthFigures;
  readonly rssMiB: { readonly beforeOverload: number; readonly max: number };
  /** The node's own event-loop delay over the whole run (its metrics, read once at the end), ms. */
  readonly nodeEventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Acknowledged reports (gRPC OK + device PubAck) and how many are missing from their twins afterwards. */
  readonly acknowledged: number;
  readonly missing: number;
  /** Device reports not applied because a later report of the same device was (stamped, stale). */
  readonly superseded: number;
  /** Up to 10 of the missing reports (twin, message id), for diagnosis. */
  readonly missingExamples: readonly string[];
  /** Milliseconds from the end of the overload until every acknowledged report was present. */
  readonly settleMs: number;
}

export interface HealthFigures {
  readonly checks: number;
  readonly failures: number;
  readonly notServing: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** The node's old-generation heap limit, MiB (`--max-old-space-size`). */
export const NODE_HEAP_MIB = 192;

interface NodeProcess {
  readonly child: ChildProcess;
  readonly grpc: string;
  readonly metrics: string;
  stop(): Promise<void>;
}

async function startNode(options: OverloadOptions, dir: string): Promise<NodeProcess> {
  const grpcPort = await freePort();
  const metricsPort = await freePort();
  const bound = options.grpcBound ?? 16;
  const config = {
    nodeId: "overload",
    dataDir: join(dir, "data"),
    store: options.store === "sqlite" ? { kind: "sqlite" } : options.store,
    grpc: { listen: `127.0.0.1:${grpcPort}` },
    shards: 8,
    log: { level: "warn" },
    nats: { servers: options.nats },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    admission: {
      grpc: { maxInFlight: bound, maxInFlightPerClient: bound },
      device: { maxInFlight: 8, maxInFlightPerClient: 2 },
    },
  };
  const file = join(dir, "node.json");
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(
    process.execPath,
    [
      // The node's heap is held to NODE_HEAP_MIB, as an operator deploys a node: V8 left to its
      // default (a 4 GiB heap on this 24 GiB machine) collects a flood's garbage so lazily that RSS
      // measures the flood rate, not what the node keeps. Held, a node that kept something per
      // refused call would die of running out of heap, and RSS bounds what is outside the heap.
      `--max-old-space-size=${NODE_HEAP_MIB}`,
      "--conditions=source",
      "--import",
      "tsx",
      CLI,
      "start",
      "--config",
      file,
    ],
    {
      cwd: REPO,
      // The node is configured by its file alone: the test's DOPPEL_NATS/REDIS/CASSANDRA (which
      // the CLI reads, and which override a config file) must not turn it into a cluster node.
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_"))),
        DOPPEL_TRACES: "off",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("is running")) resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    void exited.then((code) => reject(new Error(`node exited (${code}) before it ran:\n${output}`)));
  });
  return {
    child,
    grpc: `127.0.0.1:${grpcPort}`,
    metrics: `127.0.0.1:${metricsPort}`,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The resident set of process `pid`, MiB (from /proc). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? Number.NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const PROBE = fileURLToPath(new URL("./fixtures/health-probe.ts", import.meta.url));

/** Health checks from a process of their own (fixtures/health-probe.ts), one at a time, until stopped. */
function watchHealth(address: string) {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", PROBE, address], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const latencies: number[] = [];
  let failures = 0;
  let notServing = 0;
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      const [ms, status] = line.split(" ");
      latencies.push(Number(ms));
      if (status?.startsWith("error")) failures++;
      else if (status !== "SERVING") notServing++;
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stopped: Promise<HealthFigures> | undefined;
  return {
    /** Resolves once the prober has answered `count` checks. */
    async answered(count: number): Promise<void> {
      while (latencies.length < count) {
        if (child.exitCode !== null) throw new Error("the health prober exited");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop(): Promise<HealthFigures> {
      stopped ??= (async () => {
        child.kill("SIGTERM");
        await exited;
        const sorted = [...latencies].sort((a, b) => a - b);
        const round = (n: number) => Math.round(n * 10) / 10;
        return {
          checks: latencies.length,
          failures,
          notServing,
          p50Ms: round(percentile(sorted, 50)),
          p99Ms: round(percentile(sorted, 99)),
          maxMs: round(sorted.at(-1) ?? 0),
        };
      })();
      return stopped;
    },
  };
}

/** One ReportState call; resolves with the status code (0 = OK) and the retry hint of a refusal. */
function reportState(
  client: TwinServiceClient,
  ref: TwinRef,
  messageId: string,
  temperature: number,
): Promise<{ code: grpc.status; retryAfterMs: number | undefined }> {
  return new Promise((resolve) => {
    client.reportState(
      { type: ref.type, id: ref.id, patch: jsonToStruct({ temperature }), messageId },
      { deadline: Date.now() + 60_000 },
      (error) => {
        if (!error) return resolve({ code: grpc.status.OK, retryAfterMs: undefined });
        const hint = error.metadata?.get("retry-after-ms")[0];
        resolve({ code: error.code, retryAfterMs: hint === undefined ? undefined : Number(hint) });
      },
    );
  });
}

const TWINS = 64;

/** Runs one overload scenario (see the module comment) and returns what it saw. */
export async function runOverload(options: OverloadOptions): Promise<OverloadFigures> {
  const log = options.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), "doppel-overload-"));
  // A fresh ingress stream: nothing of an earlier run is redelivered into this one.
  const admin = await NatsTransport.connect({ servers: options.nats, name: "overload-admin" });
  await (await jetstreamManager(admin.connection)).streams.delete("DOPPEL_INGRESS").catch(() => false);
  await admin.close();
  const node = await startNode(options, dir);
  const pid = node.child.pid ?? 0;
  const contract = loadContract();
  const clients = Array.from(
    { length: 4 },
    () =>
      new contract.Client(node.grpc, grpc.credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
      }),
  );
  const deviceTransport = await NatsTransport.connect({ servers: options.nats, name: "overload-devices" });
  const devices = Array.from(
    { length: options.devices ?? 4 },
    (_, i) => new DeviceClient({ transport: deviceTransport, type: "thermostat", id: `device-${i}` }),
  );
  let throttleErrors = 0;
  for (const device of devices) {
    device.onError((error: DoppelError) => {
      if (error.code === "RESOURCE_EXHAUSTED") throttleErrors++;
    });
  }
  const reader = new DoppelClient(node.grpc, { timeoutMs: 60_000 });
  const health = watchHealth(node.grpc);
  await health.answered(1);
  let rssMax = rssMiB(pid);
  const rssTimer = setInterval(() => {
    try {
      rssMax = Math.max(rssMax, rssMiB(pid));
    } catch {
      // the process is gone
    }
  }, 100);
  /** Every acknowledged gRPC report (unstamped: each must be applied): twin id → message ids. */
  const acked = new Map<string, Set<string>>();
  /** Every acknowledged device report (stamped: applied, or superseded by a later one of its device). */
  const deviceAcked = new Map<string, { k: number; messageId: string; temperature: number }[]>();
  const ack = (id: string, messageId: string) => {
    const set = acked.get(id) ?? new Set<string>();
    set.add(messageId);
    acked.set(id, set);
  };
  let sequence = 0;
  const nextReport = () => {
    const n = sequence++;
    return {
      ref: { type: "thermostat", id: `load-${n % TWINS}` },
      messageId: `g-${n}`,
      temperature: 15 + (n % 100) / 10,
    };
  };

  try {
    // 1. Capacity: a closed loop at the bound, waiting out each refusal's hint.
    const bound = options.grpcBound ?? 16;
    let okInMeasure = 0;
    const measureEnd = Date.now() + options.measureMs;
    const measureStart = Date.now();
    await Promise.all(
      Array.from({ length: bound }, async (_, worker) => {
        const client = clients[worker % clients.length]!;
        while (Date.now() < measureEnd) {
          const { ref, messageId, temperature } = nextReport();
          const outcome = await reportState(client, ref, messageId, temperature);
          if (outcome.code === grpc.status.OK) {
            okInMeasure++;
            ack(ref.id, messageId);
          } else if (outcome.code === grpc.status.RESOURCE_EXHAUSTED) {
            await new Promise((resolve) => setTimeout(resolve, outcome.retryAfterMs ?? 10));
          }
        }
      }),
    );
    const capacityPerSec = (okInMeasure * 1000) / (Date.now() - measureStart);
    const factor = options.factor ?? 5;
    const offeredTarget = capacityPerSec * factor;
    log(`capacity ${capacityPerSec.toFixed(0)} reports/s; offering ${offeredTarget.toFixed(0)}/s`);
    const rssBefore = rssMiB(pid);

    // 2. Overload: an open loop at factor × capacity, and devices reporting meanwhile.
    const outcomes: Record<string, number> = {};
    let refusedWithoutRetryAfter = 0;
    let offered = 0;
    let deviceAcks = 0;
    let deviceAckFailures = 0;
    const pending = new Set<Promise<void>>();
    const started = Date.now();
    const overloadEnd = started + options.overloadMs;
    // Each device sends bursts of 4 reports at once: more than its bound (2 in flight), so some
    // are throttled however fast the node is.
    const deviceLoops = devices.map(async (device, d) => {
      let n = 0;
      while (Date.now() < overloadEnd) {
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            const k = n++;
            const messageId = `d-${d}-${k}`;
            const temperature = 10 + (k % 100) / 10;
            try {
              // Stamped (Doppel-Seq) in call order: k's order.
              await device.report({ temperature }, { messageId });
              deviceAcks++;
              const list = deviceAcked.get(device.ref.id) ?? [];
              list.push({ k, messageId, temperature });
              deviceAcked.set(device.ref.id, list);
            } catch {
              deviceAckFailures++;
            }
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, options.deviceIntervalMs ?? 100));
      }
    });
    let owed = 0;
    let last = Date.now();
    while (Date.now() < overloadEnd) {
      const now = Date.now();
      owed += ((now - last) / 1000) * offeredTarget;
      last = now;
      // The driver's own bound, so a node that stops answering cannot exhaust this process.
      while (owed >= 1 && pending.size < 20_000) {
        owed--;
        offered++;
        const { ref, messageId, temperature } = nextReport();
        const call = reportState(clients[offered % clients.length]!, ref, messageId, temperature).then(
          (outcome) => {
            const name = grpc.status[outcome.code] ?? String(outcome.code);
            outcomes[name] = (outcomes[name] ?? 0) + 1;
            if (outcome.code === grpc.status.OK) ack(ref.id, messageId);
            if (outcome.code === grpc.status.RESOURCE_EXHAUSTED && outcome.retryAfterMs === undefined)
              refusedWithoutRetryAfter++;
          },
        );
        pending.add(call);
        void call.finally(() => pending.delete(call));
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const overloadSeconds = (Date.now() - started) / 1000;
    await Promise.all([...pending]);
    await Promise.all(deviceLoops);
    const overloadEnded = Date.now();
    log(`overload over: ${JSON.stringify(outcomes)}; devices acked ${deviceAcks}`);

    // 3. Every acknowledged report is in its twin's log (devices' throttled reports come back
    // later). A device's reports are stamped, so one that was throttled and came back after a
    // later one of its device was applied is dropped as stale, by design: it counts as
    // superseded, not missing, when a later report of that device is in the log; and each
    // device's twin must end with its last acknowledged report.
    const settleUntil = overloadEnded + (options.settleTimeoutMs ?? 120_000);
    const causations = async (id: string) => {
      const seen = new Set<string>();
      for await (const event of reader.history({ type: "thermostat", id })) {
        if (event.causation) seen.add(event.causation);
      }
      return seen;
    };
    let missing = Number.POSITIVE_INFINITY;
    let superseded = 0;
    let missingExamples: string[] = [];
    for (;;) {
      missing = 0;
      superseded = 0;
      missingExamples = [];
      const miss = (what: string) => {
        missing++;
        if (missingExamples.length < 10) missingExamples.push(what);
      };
      for (const [id, messageIds] of acked) {
        const seen = await causations(id);
        for (const messageId of messageIds) if (!seen.has(messageId)) miss(`${id} ${messageId}`);
      }
      for (const [id, reports] of deviceAcked) {
        const seen = await causations(id);
        const applied = reports.filter((r) => seen.has(r.messageId));
        const newest = Math.max(-1, ...applied.map((r) => r.k));
        for (const r of reports) {
          if (seen.has(r.messageId)) continue;
          if (r.k < newest) superseded++;
          else miss(`${id} ${r.messageId}`);
        }
        const last = reports.reduce((a, b) => (b.k > a.k ? b : a));
        const view = await reader.getTwin({ type: "thermostat", id });
        if (view.reported["temperature"] !== last.temperature)
          miss(
            `${id} ends at ${String(view.reported["temperature"])}, last report ${last.messageId} said ${last.temperature}`,
          );
      }
      if (missing === 0 || Date.now() > settleUntil) break;
      log(`${missing} acknowledged reports not applied yet`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const settleMs = Date.now() - overloadEnded;
    // One scrape: the event-loop gauge covers the time since the previous one (here: the run).
    const metrics = await (await fetch(`http://${node.metrics}/metrics`)).text();
    const refusedByNode = metricValue(metrics, "doppel_admission_total", 'class="device",outcome="refused"');
    const loopDelay = (quantile: string) =>
      Math.round(metricValue(metrics, "doppel_event_loop_delay_ms", `quantile="${quantile}"`) * 10) / 10;
    const nodeEventLoopDelayMs = { p50: loopDelay("0.5"), p99: loopDelay("0.99"), max: loopDelay("1") };
    const healthFigures = await health.stop();
    const ok = outcomes["OK"] ?? 0;
    const refused = outcomes["RESOURCE_EXHAUSTED"] ?? 0;
    return {
      capacityPerSec: Math.round(capacityPerSec),
      offeredPerSec: Math.round(offered / overloadSeconds),
      grpcOutcomes: outcomes,
      acceptedPerSec: Math.round(ok / overloadSeconds),
      refusedPerSec: Math.round(refused / overloadSeconds),
      refusedWithoutRetryAfter,
      devices: { acked: deviceAcks, ackFailures: deviceAckFailures, throttleErrors, refusedByNode },
      health: healthFigures,
      rssMiB: { beforeOverload: rssBefore, max: rssMax },
      nodeEventLoopDelayMs,
      acknowledged:
        [...acked.values()].reduce((sum, set) => sum + set.size, 0) +
        [...deviceAcked.values()].reduce((sum, list) => sum + list.length, 0),
      superseded,
      missingExamples,
      missing,
      settleMs,
    };
  } finally {
    clearInterval(rssTimer);
    await health.stop().catch(() => undefined);
    reader.close();
    for (const client of clients) client.close();
    for (const device of devices) await device.close().catch(() => undefined);
    await deviceTransport.close();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
