/**
 * Harness of the cluster integration tests: real NATS, Redis and Cassandra (`scripts/infra/all.sh
 * up`), and every node a separate process (`fixtures/node.ts`, which is `doppel start` plus a
 * debug probe). It writes one configuration file per cluster (short timings: heartbeat 200 ms, dead
 * after 1 s, lease TTL 1.5 s, ackWait 3 s; 16 shards), spawns, stops, kills, pauses and resumes
 * nodes, waits on cluster states instead of sleeping, drives device and gRPC load, and checks the
 * event log afterwards.
 *
 * Isolation: a cluster name unique per run (Redis keys), twin ids unique per run (the keyspace
 * `doppel_it_cluster` is shared and never cleaned), and the ingress stream deleted before and
 * after each test file (the stream is partitioned for 16 shards; other test files use 8).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  type WriteStream,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { expect } from "vitest";
import { HashRing } from "../../../cluster/ring/hash-ring.ts";
import { shardOf } from "../../../cluster/ring/shard.ts";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { TransportError } from "../../../cluster/transport/transport.ts";
import type { ClusterView } from "../../../runtime/core/cluster-view.ts";
import { DoppelError } from "../../../runtime/core/errors.ts";
import { DeviceClient } from "../../../runtime/devices/client/device-client.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { nodeSubject, PING_REQUEST } from "../../../runtime/routing/protocol.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { eventually } from "../../support/eventually.ts";
import { CASSANDRA, openStore, testKeyspace } from "../cassandra/harness.ts";
import { SCRIPT_REDIS } from "../redis/redis-env.ts";

export { noRestartReason, redisDown, redisPause, redisResume, redisUp } from "../redis/redis-env.ts";
export { eventually };

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const FIXTURE = fileURLToPath(new URL("./fixtures/node.ts", import.meta.url));
/** The example twins every test node runs (listed first when a test adds twin modules). */
const EXAMPLE_TWINS = fileURLToPath(new URL("../../../twins/index.ts", import.meta.url));
/** The twin module of the reminder tests (`alarmclock`). */
export const ALARM_CLOCK_TWINS = fileURLToPath(new URL("./fixtures/alarm-clock.ts", import.meta.url));

/** Shards of the test clusters. */
export const SHARDS = 16;
/** The keyspace every cluster test writes to (twin ids are unique per run). */
export const KEYSPACE = "doppel_it_cluster";
/** The ingress stream (its name is fixed by the device subjects it captures). */
export const STREAM = "DOPPEL_INGRESS";
/** Cluster timings of a test cluster (ms). */
export interface Timings {
  readonly heartbeat: number;
  readonly deadAfter: number;
  readonly leaseTtl: number;
  readonly ackWait: number;
}
/**
 * The default, for scenarios that are not about lease expiry (joins, leaves, crashes): on a loaded
 * machine (load 5-15 on 2 cores) a node's event loop can stall for seconds, and a lease that
 * expires in such a stall moves shards the test did not mean to move (with 1-2 s timings the
 * membership and the leases of a three-node cluster flapped every few seconds under load). A lease
 * of 8 s renewed every 2.7 s survives a stall of about 4.5 s; a node is dead after 5 s of silence.
 */
export const TIMINGS: Timings = { heartbeat: 500, deadAfter: 5000, leaseTtl: 8000, ackWait: 6000 };
/** The deadline of the test clients' unary calls. */
export const CLIENT_TIMEOUT_MS = 30_000;

export const TYPE = "thermostat";

export const NATS_URL = (() => {
  const url = process.env["DOPPEL_NATS"];
  if (!url)
    throw new Error('DOPPEL_NATS is not set: scripts/infra/all.sh up && eval "$(scripts/infra/all.sh env)"');
  return url;
})();
export const REDIS_URL = process.env["DOPPEL_REDIS"] || SCRIPT_REDIS;

/** A short id unique to this run. */
export function runId(): string {
  return randomBytes(4).toString("hex");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The ring's assignment for these members (what every node computes). */
export function ringAssignment(members: readonly string[]): readonly string[] {
  return new HashRing([...members]).assignment(SHARDS);
}

export function shardOfTwin(id: string): number {
  return shardOf(TYPE, id, SHARDS);
}

/** `count` twin ids per shard in `shards`, of the form `<prefix>-<n>`. */
export function idsInShards(prefix: string, shards: readonly number[], count = 1): Map<number, string[]> {
  const wanted = new Set(shards);
  const found = new Map<number, string[]>();
  for (let n = 0; [...wanted].some((s) => (found.get(s)?.length ?? 0) < count); n++) {
    const id = `${prefix}-${n}`;
    const shard = shardOfTwin(id);
    if (!wanted.has(shard)) continue;
    const list = found.get(shard) ?? [];
    if (list.length < count) list.push(id);
    found.set(shard, list);
  }
  return found;
}

/** What a node's debug probe answers (see fixtures/node.ts). */
export interface Probe {
  readonly node: string;
  readonly pid: number;
  readonly active: readonly string[];
  readonly loading: number;
  readonly owned: readonly { shard: number; epoch: number }[];
  readonly consuming: readonly number[];
  /** Reports the node acknowledged without applying them, by reason, since it started. */
  readonly dropped: { readonly duplicate: number; readonly stale: number };
}

/** The test process's own NATS connection (probes, devices, stream management). */
export class Wire {
  private constructor(readonly transport: NatsTransport) {}

  static async connect(): Promise<Wire> {
    return new Wire(await NatsTransport.connect({ servers: NATS_URL, name: "cluster-it" }));
  }

  /** Deletes the ingress stream and its consumers. */
  async resetStream(): Promise<void> {
    const jsm = await jetstreamManager(this.transport.connection);
    await jsm.streams.delete(STREAM).catch(() => false);
  }

  /** Messages the ingress stream still holds (stored, not yet acknowledged after persistence). */
  async streamMessages(): Promise<number> {
    const jsm = await jetstreamManager(this.transport.connection);
    return (await jsm.streams.info(STREAM)).state.messages;
  }

  /** Waits until every stored device message has been persisted and acknowledged. */
  async streamDrained(timeoutMs = 120_000): Promise<void> {
    await eventually(
      async () => ((await this.streamMessages()) === 0 ? true : undefined),
      "the ingress stream to drain",
      timeoutMs,
      50,
    );
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}

/** A node process. */
export class NodeProcess {
  readonly client: DoppelClient;
  /** `performance.now()` when the process was spawned, and when it said it was running. */
  readonly spawnedAt = performance.now();
  runningAt = 0;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  #exitedNow = false;
  #paused = false;

  constructor(
    readonly id: string,
    readonly address: string,
    readonly child: ChildProcess,
    readonly logFile: string,
    private readonly cluster: TestCluster,
  ) {
    this.client = new DoppelClient(address, { timeoutMs: CLIENT_TIMEOUT_MS });
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#exitedNow = true;
        resolve(code ?? signal ?? "?");
      });
    });
  }

  get running(): boolean {
    return !this.#exitedNow;
  }

  #output = "";
  readonly #waiters: { text: string; resolve: () => void }[] = [];

  /** Called with everything the process writes on stdout. */
  onOutput(chunk: string): void {
    this.#output = (this.#output + chunk).slice(-200_000);
    for (const waiter of [...this.#waiters]) {
      if (this.#output.includes(waiter.text)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }

  /** Resolves once the process has written `text` on stdout. */
  saw(text: string, timeoutMs = 15_000): Promise<void> {
    if (this.#output.includes(text)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.id} did not print "${text}"`)), timeoutMs);
      this.#waiters.push({
        text,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Graceful stop (SIGTERM, as an operator or Kubernetes would); resolves with the exit code. */
  async terminate(): Promise<number | string> {
    if (this.#paused) this.resume();
    if (this.running) this.child.kill("SIGTERM");
    return this.exited;
  }

  /**
   * Kills the process (SIGKILL) and waits until nats-server has dropped its connection too: a
   * request sent between the process's exit and the server noticing it would be delivered to the
   * dead connection and answered by no one, so a caller would learn only from its liveness ping
   * that the node "went away" with the outcome unknown, where a request sent after gets "no
   * responders" at once and is retried on the shard's next owner.
   */
  async crash(): Promise<void> {
    if (this.running) this.child.kill("SIGKILL");
    await this.exited;
    for (;;) {
      try {
        await this.cluster.wire.transport.request(nodeSubject(this.id), PING_REQUEST, { timeoutMs: 1000 });
      } catch (error) {
        if (error instanceof TransportError && error.failure === "no-responders") return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  pause(): void {
    this.child.kill("SIGSTOP");
    this.#paused = true;
  }

  resume(): void {
    this.child.kill("SIGCONT");
    this.#paused = false;
  }

  /** What the node says about itself (twins active, shards owned and consumed). */
  async probe(timeoutMs = 3000): Promise<Probe> {
    const reply = await this.cluster.wire.transport.request(
      probeSubject(this.cluster.name, this.id),
      new Uint8Array(),
      { timeoutMs },
    );
    return JSON.parse(new TextDecoder().decode(reply.data)) as Probe;
  }

  /** Starts or stops the node's reminder service (the fixture's switch, see fixtures/node.ts). */
  async reminders(on: boolean): Promise<void> {
    await this.cluster.wire.transport.request(
      `doppeltest.reminders.${this.cluster.name}.${this.id}`,
      new TextEncoder().encode(on ? "on" : "off"),
      { timeoutMs: 10_000 },
    );
  }

  close(): void {
    this.client.close();
  }
}

/** The subject of a node's debug probe (the same as in fixtures/node.ts). */
export function probeSubject(cluster: string, nodeId: string): string {
  return `doppeltest.probe.${cluster}.${nodeId}`;
}

/** One cluster of node processes sharing a configuration file. */
export class TestCluster {
  readonly name: string;
  readonly dir: string;
  readonly configPath: string;
  readonly nodes = new Map<string, NodeProcess>();
  readonly #logs: WriteStream[] = [];

  private constructor(
    prefix: string,
    readonly wire: Wire,
    readonly timings: Timings,
    twins: readonly string[],
  ) {
    // If the test process dies without closing the cluster, its nodes die with it.
    process.once("exit", () => {
      for (const node of this.nodes.values()) if (node.running) node.child.kill("SIGKILL");
    });
    this.name = `it-${prefix}-${runId()}`;
    this.dir = mkdtempSync(join(tmpdir(), `doppel-${this.name}-`));
    this.configPath = join(this.dir, "doppel.json");
    const config = {
      shards: SHARDS,
      store: {
        kind: "cassandra",
        contactPoints: CASSANDRA.split(","),
        localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
        keyspace: testKeyspace(KEYSPACE),
        startupRetry: "60s",
      },
      nats: {
        servers: NATS_URL,
        consumer: { ackWait: timings.ackWait, maxAckPending: 128, maxInFlightPerTwin: 8 },
      },
      cluster: {
        name: this.name,
        redis: REDIS_URL,
        heartbeat: timings.heartbeat,
        deadAfter: timings.deadAfter,
        leaseTtl: timings.leaseTtl,
      },
      log: { level: "info" },
      ...(twins.length > 0 ? { twins: [EXAMPLE_TWINS, ...twins] } : {}),
    };
    writeFileSync(this.configPath, `${JSON.stringify(config, null, 2)}\n`);
  }

  /**
   * A cluster for one test file (nodes run the example twins, plus the twin modules `twins`): creates the keyspace (so nodes starting together do not race
   * for the schema) and a fresh ingress stream. Close it in `afterAll`.
   */
  static async create(
    prefix: string,
    timings: Timings = TIMINGS,
    twins: readonly string[] = [],
  ): Promise<{ cluster: TestCluster; store: CassandraEventStore }> {
    const store = await openStore(KEYSPACE);
    const wire = await Wire.connect();
    await wire.resetStream();
    return { cluster: new TestCluster(prefix, wire, timings, twins), store };
  }

  /** Starts nodes `ids` (in parallel); resolves once each says it is running. */
  async start(...ids: string[]): Promise<NodeProcess[]> {
    return Promise.all(ids.map((id) => this.spawn(id)));
  }

  /**
   * Spawns one node with the real CLI arguments; resolves once it is running. `env` is added to
   * the node's environment (fault injection: see fixtures/node.ts).
   */
  async spawn(id: string, env: Readonly<Record<string, string>> = {}): Promise<NodeProcess> {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const logFile = join(this.dir, `${id}.log`);
    const log = createWriteStream(logFile, { flags: "a" });
    this.#logs.push(log);
    const child = spawn(
      process.execPath,
      [
        "--conditions=source",
        "--import",
        "tsx",
        FIXTURE,
        "start",
        "--config",
        this.configPath,
        "--node-id",
        id,
        "--listen",
        address,
        "--nats",
        NATS_URL,
        "--redis",
        REDIS_URL,
        "--cassandra",
        CASSANDRA,
        "--cluster",
        this.name,
        "--shards",
        String(SHARDS),
        "--no-demo",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
    );
    const node = new NodeProcess(id, address, child, logFile, this);
    this.nodes.set(id, node);
    child.stderr?.pipe(log, { end: false });
    child.stdout?.on("data", (chunk: Buffer) => {
      log.write(chunk);
      node.onOutput(chunk.toString());
    });
    await Promise.race([
      node.saw("is running", 120_000).then(() => {
        node.runningAt = performance.now();
      }),
      node.exited.then((code) => {
        throw new Error(`node ${id} exited (${code}) before it was running:\n${this.tail(id)}`);
      }),
    ]);
    return node;
  }

  node(id: string): NodeProcess {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  /** Nodes that run and are not paused. */
  live(): NodeProcess[] {
    return [...this.nodes.values()].filter((n) => n.running && !n.paused);
  }

  /**
   * Waits until every live node sees exactly `members`, computes the ring's assignment for them,
   * and sees every shard held by its assigned node. Returns the view of the first live node.
   */
  async settled(members: readonly string[], timeoutMs = 45_000): Promise<ClusterView> {
    const expected = ringAssignment(members);
    const wanted = [...members].sort();
    let last = "";
    return eventually(
      async () => {
        let first: ClusterView | undefined;
        for (const node of this.live()) {
          const view = await node.client.cluster();
          const ids = view.nodes.map((n) => n.id).sort();
          const wrong = view.shards.filter(
            (s) => s.assignedTo !== expected[s.shard] || s.holder !== expected[s.shard],
          );
          if (JSON.stringify(ids) !== JSON.stringify(wanted) || wrong.length > 0) {
            last = `${node.id} sees [${ids.join(",")}], shards not settled: ${wrong
              .map((s) => `${s.shard}:${s.holder || "-"}→${expected[s.shard]}`)
              .join(" ")}`;
            return undefined;
          }
          first ??= view;
        }
        return first;
      },
      () => `the cluster to settle on [${wanted.join(",")}] (${last})`,
      timeoutMs,
      50,
    );
  }

  /** The probes of `nodes` (default: every live node). */
  async probes(nodes: readonly NodeProcess[] = this.live()): Promise<Probe[]> {
    return Promise.all(nodes.map((n) => n.probe()));
  }

  /** The last lines of a node's log. */
  tail(id: string, lines = 40): string {
    try {
      return readFileSync(join(this.dir, `${id}.log`), "utf8")
        .split("\n")
        .slice(-lines)
        .join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Prints every node's log tail (call from `onTestFailed`). */
  dumpLogs(lines = 60): void {
    for (const id of this.nodes.keys()) {
      process.stderr.write(`\n----- ${id} (${join(this.dir, `${id}.log`)}) -----\n${this.tail(id, lines)}\n`);
    }
  }

  /**
   * Ends every node still running (SIGKILL: a test's own stops are graceful where it matters),
   * deletes the ingress stream, and removes the folder unless DOPPEL_IT_KEEP=1.
   */
  async close(): Promise<void> {
    for (const node of this.nodes.values()) {
      if (node.paused) node.resume();
      if (node.running) node.child.kill("SIGKILL");
    }
    await Promise.all([...this.nodes.values()].map((n) => n.exited));
    for (const node of this.nodes.values()) node.close();
    for (const log of this.#logs) log.end();
    await this.wire.resetStream().catch(() => undefined);
    await this.wire.close();
    if (process.env["DOPPEL_IT_KEEP"] === "1")
      process.stderr.write(`cluster test files kept in ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Which live node(s) each twin is active on, from the nodes' probes. */
export function residency(probes: readonly Probe[]): Map<string, string[]> {
  const on = new Map<string, string[]>();
  for (const probe of probes) {
    for (const key of probe.active) {
      const list = on.get(key) ?? [];
      list.push(probe.node);
      on.set(key, list);
    }
  }
  return on;
}

/** Twins active on more than one node (should never happen). */
export function doublyActive(probes: readonly Probe[]): [string, string[]][] {
  return [...residency(probes)].filter(([, nodes]) => nodes.length > 1);
}

/** Simulated devices (the `DeviceClient` SDK over the test's NATS connection) reporting in a loop. */
export class DeviceLoad {
  /** Message ids acknowledged to each device (stored by JetStream), in order. */
  readonly acked = new Map<string, string[]>();
  /** Reports whose publish failed (the device would re-send them). */
  readonly failures: string[] = [];
  /** The last report acknowledged to each device (what its twin's `reported` must end as). */
  readonly last = new Map<string, { temperature: number; heating: boolean }>();
  readonly #clients: DeviceClient[];
  #running = false;
  #loops: Promise<void>[] = [];
  #sent = 0;

  constructor(
    wire: Wire,
    readonly ids: readonly string[],
    private readonly intervalMs: number,
    /** Part of every message id, so loads on the same twins never share ids. */
    private readonly tag: string = runId(),
  ) {
    this.#clients = ids.map(
      (id) => new DeviceClient({ transport: wire.transport, type: TYPE, id, ackTimeoutMs: 10_000 }),
    );
    for (const id of ids) this.acked.set(id, []);
  }

  /** Reports acknowledged so far. */
  get count(): number {
    let n = 0;
    for (const list of this.acked.values()) n += list.length;
    return n;
  }

  start(): void {
    this.#running = true;
    this.#loops = this.#clients.map((client, index) => this.#loop(client, index));
  }

  /** Sends one round of reports (every device once) and waits for their acks. */
  async round(tag: string): Promise<void> {
    await Promise.all(this.#clients.map((client, index) => this.#send(client, index, tag)));
  }

  async #send(client: DeviceClient, index: number, seq: number | string): Promise<void> {
    const id = client.ref.id;
    const messageId = `${id}.${this.tag}.${seq}`;
    // 18.0 .. 22.9 °C: never an alarm (no reminders), sometimes a heating decision.
    const temperature = 18 + (this.#sent++ % 50) / 10;
    const heating = (this.#sent + index) % 3 === 0;
    try {
      await client.report({ temperature, heating }, { messageId });
      this.acked.get(id)!.push(messageId);
      this.last.set(id, { temperature, heating });
    } catch (error) {
      this.failures.push(`${messageId}: ${(error as Error).message}`);
    }
  }

  async #loop(client: DeviceClient, index: number): Promise<void> {
    // Spread the devices over the interval.
    await sleep((index * this.intervalMs) / this.#clients.length);
    for (let seq = 0; this.#running; seq++) {
      const started = Date.now();
      await this.#send(client, index, seq);
      const wait = this.intervalMs - (Date.now() - started);
      if (wait > 0) await sleep(wait);
    }
  }

  /** Stops reporting; resolves when every report sent has its answer. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  async close(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    await Promise.all(this.#clients.map((c) => c.close()));
  }
}

/**
 * Services calling twins through gRPC, one sequential loop per (node, twin): `setTarget`
 * alternating 20 and 22 °C, so each successful call adds exactly one `setPointChanged` event.
 * Any error a client sees is recorded (the router retries moving shards transparently, so there
 * should be none while the nodes it calls run).
 */
export class ServiceLoad {
  readonly ok = new Map<string, number>();
  readonly errors: string[] = [];
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(private readonly assignments: readonly { node: NodeProcess; ids: readonly string[] }[]) {
    for (const { ids } of assignments) for (const id of ids) this.ok.set(id, 0);
  }

  get calls(): number {
    let n = 0;
    for (const count of this.ok.values()) n += count;
    return n;
  }

  start(): void {
    this.#running = true;
    for (const { node, ids } of this.assignments) {
      for (const id of ids) this.#loops.push(this.#loop(node, id));
    }
  }

  async #loop(node: NodeProcess, id: string): Promise<void> {
    while (this.#running) {
      const done = this.ok.get(id) ?? 0;
      const celsius = done % 2 === 0 ? 20 : 22;
      const started = Date.now();
      try {
        await node.client.invoke({ type: TYPE, id }, "setTarget", { celsius });
        this.ok.set(id, done + 1);
      } catch (error) {
        const code = error instanceof DoppelError ? error.code : "?";
        this.errors.push(
          `${node.id} → ${id}: ${code} ${(error as Error).message} (after ${Date.now() - started} ms)`,
        );
        await sleep(100);
      }
      await sleep(40);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

/** What the event log says about a set of device twins, checked against what was acknowledged. */
export interface LogCheck {
  readonly twins: number;
  readonly events: number;
  readonly reports: number;
  /** Acknowledged reports missing from the log. */
  readonly missing: string[];
  /** Reports (by message id) that appear more than once. */
  readonly duplicated: string[];
  /** Twins whose event sequence is not 1..N. */
  readonly gaps: string[];
  /** Devices whose acknowledged reports were applied in another order than they were acknowledged. */
  readonly outOfOrder: string[];
  /**
   * Acknowledged reports not applied although a later report of the same device was: what the
   * twin's high-water mark drops as stale (its effect superseded). Each must be a stale drop a node
   * counted (see {@link expectEveryReportOnce}); `missing` are the others, lost.
   */
  readonly superseded: string[];
}

/** Reads every twin's log and checks: every acked report present exactly once, sequences 1..N. */
export async function checkReports(
  store: CassandraEventStore,
  acked: ReadonlyMap<string, readonly string[]>,
): Promise<LogCheck> {
  const missing: string[] = [];
  const duplicated: string[] = [];
  const gaps: string[] = [];
  const outOfOrder: string[] = [];
  const superseded: string[] = [];
  let events = 0;
  let reports = 0;
  for (const [id, ids] of acked) {
    const log = await store.readHistory({ type: TYPE, id }, { limit: 100_000 });
    events += log.length;
    log.forEach((event, i) => {
      if (event.seq !== i + 1 && gaps.at(-1) !== id)
        gaps.push(`${id} (seq ${event.seq} at position ${i + 1})`);
    });
    const seen = new Map<string, string[]>();
    for (const event of log) {
      if (event.type !== "$reported" || event.causation === undefined) continue;
      reports++;
      const where = `#${event.seq} by ${event.writer.node}@${event.writer.epoch} at ${event.at}`;
      seen.set(event.causation, [...(seen.get(event.causation) ?? []), where]);
    }
    for (const [causation, where] of seen) {
      if (where.length > 1) duplicated.push(`${causation} ×${where.length}: ${where.join(", ")}`);
    }
    const lastApplied = ids.reduce((last, messageId, i) => (seen.has(messageId) ? i : last), -1);
    ids.forEach((messageId, i) => {
      if (!seen.has(messageId)) (i < lastApplied ? superseded : missing).push(messageId);
    });
    // A device sends its next report only after the last one was acknowledged: its reports must
    // be applied in that order.
    const position = new Map(ids.map((messageId, i) => [messageId, i]));
    const applied = log.flatMap((e) =>
      e.type === "$reported" && e.causation !== undefined && position.has(e.causation) ? [e] : [],
    );
    for (let i = 1; i < applied.length; i++) {
      const [a, b] = [applied[i - 1]!, applied[i]!];
      if (position.get(a.causation!)! > position.get(b.causation!)!) {
        outOfOrder.push(`${id}: ${b.causation} (#${b.seq}) applied after ${a.causation} (#${a.seq})`);
        break;
      }
    }
  }
  return { twins: acked.size, events, reports, missing, duplicated, gaps, outOfOrder, superseded };
}

/**
 * Once the ingress stream is drained: no device saw a failure, and every report acknowledged to a
 * device is in its twin's log exactly once, each log's sequence without gaps. Returns the check
 * (for the test's summary line).
 */
export async function expectEveryReportOnce(
  cluster: TestCluster,
  store: CassandraEventStore,
  devices: DeviceLoad,
  drainTimeoutMs?: number,
): Promise<LogCheck> {
  expect(devices.failures).toEqual([]);
  await cluster.wire.streamDrained(drainTimeoutMs);
  const log = await checkReports(store, devices.acked);
  expect(log.missing).toEqual([]);
  expect(log.duplicated).toEqual([]);
  expect(log.gaps).toEqual([]);
  expect(log.outOfOrder).toEqual([]);
  expect(log.superseded.length).toBeLessThanOrEqual(await staleDrops(cluster));
  return log;
}

/**
 * Reports the live nodes dropped as stale (at or below their twin's high-water mark) since they
 * started: the bound for `LogCheck.superseded` (a node that was killed took its count with it,
 * so tests that kill nodes see a lower bound).
 */
export async function staleDrops(cluster: TestCluster): Promise<number> {
  const probes = await cluster.probes();
  return probes.reduce((n, p) => n + (p.dropped?.stale ?? 0), 0);
}

/** Checks the service twins: each successful call made exactly one `setPointChanged` event. */
export async function checkServiceCalls(
  store: CassandraEventStore,
  ok: ReadonlyMap<string, number>,
): Promise<string[]> {
  const wrong: string[] = [];
  for (const [id, calls] of ok) {
    const log = await store.readHistory({ type: TYPE, id }, { limit: 100_000 });
    const changes = log.filter((e) => e.type === "setPointChanged").length;
    if (changes !== calls) wrong.push(`${id}: ${calls} calls, ${changes} events`);
    log.forEach((event, i) => {
      if (event.seq !== i + 1) wrong.push(`${id}: seq ${event.seq} at position ${i + 1}`);
    });
  }
  return wrong;
}

/** Epoch of every shard in a view (0 when nobody holds it). */
export function epochs(view: ClusterView): number[] {
  return view.shards.map((s) => s.epoch);
}

/**
 * Checks the nodes' own view against the ring's assignment for `members`: each node owns exactly
 * its assigned shards (lease held), consumes exactly those (JetStream), runs only twins of those,
 * and no twin is active on two nodes. Returns the problems found (none when settled).
 */
export function ownershipProblems(probes: readonly Probe[], members: readonly string[]): string[] {
  const assignment = ringAssignment(members);
  const problems: string[] = [];
  for (const probe of probes) {
    const assigned = assignment.flatMap((node, shard) => (node === probe.node ? [shard] : []));
    const owned = probe.owned.map((o) => o.shard).sort((a, b) => a - b);
    const consuming = [...probe.consuming].sort((a, b) => a - b);
    if (JSON.stringify(owned) !== JSON.stringify(assigned))
      problems.push(`${probe.node} owns [${owned}], assigned [${assigned}]`);
    if (JSON.stringify(consuming) !== JSON.stringify(owned))
      problems.push(`${probe.node} consumes [${consuming}], owns [${owned}]`);
    const strays = probe.active.filter((key) => !owned.includes(shardOfTwin(key.slice(TYPE.length + 1))));
    if (strays.length > 0)
      problems.push(`${probe.node} runs twins of shards it does not own: ${strays.join(", ")}`);
  }
  for (const [key, nodes] of doublyActive(probes)) problems.push(`${key} active on ${nodes.join(" and ")}`);
  return problems;
}

/** Waits until {@link ownershipProblems} finds none; returns the probes. */
export async function ownershipSettled(
  cluster: TestCluster,
  members: readonly string[],
  timeoutMs = 30_000,
): Promise<Probe[]> {
  let last: string[] = [];
  return eventually(
    async () => {
      const probes = await cluster.probes();
      last = ownershipProblems(probes, members);
      return last.length === 0 ? probes : undefined;
    },
    () => `every node to own, consume and run exactly its shards (${last.join("; ")})`,
    timeoutMs,
    50,
  );
}
