/** Shared by the benches: latency histograms, machine facts, and the one-JSON-line result. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { JetStreamManager } from "@nats-io/jetstream";
import * as hdr from "hdr-histogram-js";
import { freePort } from "../runtime/testing/free-port.ts";

/** A latency histogram in microseconds. */
export function histogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** p50/p90/p99/max of a microsecond histogram, in milliseconds. */
export function percentiles(h: hdr.Histogram): { p50: number; p90: number; p99: number; max: number } {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
  };
}

/** Facts about the machine the bench ran on. */
export function machine(): Record<string, string | number> {
  return {
    node: process.version,
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? "?",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    // Flags given to the bench's node (a young generation size, say) change what it measures.
    ...(process.env["NODE_OPTIONS"] ? { nodeOptions: process.env["NODE_OPTIONS"] } : {}),
  };
}

/** The machine's 1/5/15-minute load averages now (as `uptime` shows them; the machine is shared). */
export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
}

/**
 * CPU time (user + system, ms) a process has used so far, from `/proc/<pid>/stat` (Linux; clock
 * ticks of 10 ms); undefined where that cannot be read.
 */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) in parentheses: utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Prints progress on stderr (stdout's last line is the result). */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Writes the result under bench/results/ and prints it as the last line of stdout. */
export function report(name: string, result: Record<string, unknown>): void {
  const body = { bench: name, at: new Date().toISOString(), machine: machine(), ...result };
  const dir = join(dirname(fileURLToPath(import.meta.url)), "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${name}-${body.at.replace(/[:.]/g, "-")}.json`),
    `${JSON.stringify(body, null, 2)}\n`,
  );
  process.stdout.write(`${JSON.stringify(body)}\n`);
}

/** Forces a full garbage collection (needs --expose-gc) and returns heapUsed. */
export function settledHeap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc");
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

/** The median of `values`. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Throughput and latency of one closed-loop round. */
export interface LoopRound {
  readonly callsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
}

/**
 * `calls` calls of `call` (given the call's index) by `concurrency` workers, each awaiting its
 * call before the next: calls per second and p50/p99 latency (ms).
 */
export async function closedLoop(
  call: (n: number) => Promise<unknown>,
  calls: number,
  concurrency: number,
): Promise<LoopRound> {
  const latencies = histogram();
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < calls) {
      const n = next++;
      const sent = performance.now();
      await call(n);
      latencies.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  const { p50, p99 } = percentiles(latencies);
  return { callsPerSecond: Math.round(calls / seconds), p50, p99 };
}

/** Median, min, max and (max − min) / median of one side's per-round figures. */
export function summary(values: number[]) {
  const m = median(values);
  return {
    median: Math.round(m * 1000) / 1000,
    min: Math.min(...values),
    max: Math.max(...values),
    spread: Math.round(((Math.max(...values) - Math.min(...values)) / m) * 1000) / 1000,
  };
}

/** `bench:ingest`'s baseline stream and its subject prefix (`<prefix>.dev.<type>.<id>.reported`). */
export const BARE_STREAM = "DOPPEL_BENCH_BARE";
export const BARE_PREFIX = "doppelbare";

/**
 * Runs `script` again as a child process with the argument `serve` (a bench's servers, apart from
 * its client loop) and resolves once the child prints `READY <json>`, with that JSON.
 */
export function startServerProcess<T extends object>(script: string): Promise<{ child: ChildProcess } & T> {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", script, "serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => l.startsWith("READY "));
      if (line) resolve({ child, ...(JSON.parse(line.slice(6)) as T) });
    });
    child.once("exit", (code) => reject(new Error(`server process exited (${code})`)));
  });
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A node process of a bench, started with the real CLI. */
export interface BenchNode {
  readonly child: ChildProcess;
  /** Its gRPC address. */
  readonly address: string;
  /** Milliseconds from spawn to "is running". */
  readonly startMs: number;
}

/**
 * Starts `node <args>` (`args` begin with the node's own flags, then `bin/doppel.js start ...`)
 * from the repository root, adding `--listen` on a free loopback port, `--no-demo` and
 * `--log-level warn`; resolves once it prints "is running". The node is configured by its flags
 * alone: DOPPEL_* variables of the shell (DOPPEL_REDIS would make it a cluster node) are dropped
 * (`options.env` adds variables back deliberately).
 */
export async function startDoppelNode(
  args: string[],
  /** `env`: variables added to the node's environment; `stderr: "pipe"` to read it (else inherited). */
  options: { env?: Record<string, string>; stderr?: "pipe" } = {},
): Promise<BenchNode> {
  const address = `127.0.0.1:${await freePort()}`;
  const started = Date.now();
  const child = spawn(process.execPath, [...args, "--listen", address, "--no-demo", "--log-level", "warn"], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", options.stderr ?? "inherit"],
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_"))),
      ...options.env,
    },
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("is running")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`node exited (${code}) before it was ready: ${out}`)));
  });
  return { child, address, startMs: Date.now() - started };
}

/** Stops a child process (SIGTERM) and resolves once it has exited. */
export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  return gone;
}

/** Resolves once `stream` holds no message (every report consumed and acknowledged). */
export async function streamEmpty(jsm: JetStreamManager, stream: string): Promise<void> {
  for (;;) {
    const info = await jsm.streams.info(stream);
    if (info.state.messages === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sends `total` items through `send`, at most `window` outstanding. */
export async function windowed(
  total: number,
  window: number,
  send: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await send(next++);
  };
  await Promise.all(Array.from({ length: window }, lane));
}

/** Where a bench's cluster node finds its servers, and what it is. */
export interface ClusterNodeFlags {
  readonly id: string;
  readonly cluster: string;
  readonly shards: number;
  readonly listen: string;
  readonly nats: string;
  readonly redis: string;
  readonly cassandra: string;
  /** A `--config` file for the settings that have no flag. */
  readonly config?: string;
}

/** The arguments of `node bin/doppel.js start` for a cluster node of a bench (no demo, log level warn). */
export function clusterNodeArgs(flags: ClusterNodeFlags): string[] {
  return [
    "bin/doppel.js",
    "start",
    ...(flags.config === undefined ? [] : ["--config", flags.config]),
    "--nats",
    flags.nats,
    "--redis",
    flags.redis,
    "--cassandra",
    flags.cassandra,
    "--cluster",
    flags.cluster,
    "--shards",
    String(flags.shards),
    "--node-id",
    flags.id,
    "--listen",
    flags.listen,
    "--no-demo",
    "--log-level",
    "warn",
  ];
}
