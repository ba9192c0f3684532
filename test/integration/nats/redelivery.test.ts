import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteEventStore } from "../../../runtime/persistence/sqlite-store.ts";
import { deviceTransport, eventually, natsUrl, resetStream, startNatsNode, TEST_SHARDS } from "./harness.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/crash-node.ts", import.meta.url));
const ACK_WAIT = "1s";

/** Starts the crash fixture; resolves once it printed READY. */
function startCrashNode(
  db: string,
  mode: string,
  twin: string,
  ackWait = ACK_WAIT,
): Promise<{ child: ChildProcess; saw: (line: string) => Promise<void> }> {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", FIXTURE], {
    env: {
      ...process.env,
      DOPPEL_NATS: natsUrl(),
      CRASH_DB: db,
      CRASH_MODE: mode,
      CRASH_TWIN: twin,
      CRASH_SHARDS: String(TEST_SHARDS),
      CRASH_ACK_WAIT: ackWait,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters: { line: string; resolve: () => void }[] = [];
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n").filter(Boolean)) {
      lines.push(line);
      for (const w of waiters.filter((w) => w.line === line)) w.resolve();
    }
  });
  const saw = (line: string) =>
    new Promise<void>((resolve, reject) => {
      if (lines.includes(line)) return resolve();
      waiters.push({ line, resolve });
      child.once("exit", (code) =>
        reject(new Error(`crash node exited (${code}) before ${line}: ${stderr}`)),
      );
    });
  return saw("READY").then(() => ({ child, saw }));
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/**
 * The node that takes over after a crash: same SQLite file, same stream, consumer `ackWait`.
 * Its `stop` closes the store too.
 */
async function startSuccessor(db: string, ackWait: string) {
  const store = new SqliteEventStore({ path: db });
  const node = await startNatsNode({
    store,
    config: {
      nodeId: "successor",
      grpc: { listen: "127.0.0.1:0" },
      nats: { servers: natsUrl(), consumer: { ackWait } },
    },
  });
  return {
    ...node,
    async stop() {
      await node.stop();
      await store.close();
    },
  };
}

describe("durable ingress when a node dies", () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "doppel-crash-"));
    await resetStream();
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await resetStream();
  });

  for (const mode of ["before-persist", "after-persist"] as const) {
    it(`redelivers a report whose node was killed ${mode.replace("-", " ")}, and it makes exactly one event`, async () => {
      const db = join(dir, `${mode}.db`);
      const twin = `crash-${mode}`;
      const { child, saw } = await startCrashNode(db, mode, twin);
      const wire = await deviceTransport();
      try {
        const device = new DeviceClient({ transport: wire, type: "thermostat", id: twin });
        // Stored in the stream: the device's ack.
        const ack = await device.report({ temperature: 18.5 }, { messageId: `${twin}-m1` });
        expect(ack.duplicate).toBe(false);
        // Delivered to the node, and the node is inside the store commit: kill it there.
        await saw(mode === "after-persist" ? "COMMITTED" : "BLOCKED");
        await kill(child);

        // Another node over the same store takes over the shard; the server redelivers after ackWait.
        const next = await startSuccessor(db, ACK_WAIT);
        try {
          const durable = next.node.devices.durable!;
          await eventually(
            () => (durable.stats.acked >= 1 ? true : undefined),
            "the redelivered report acknowledged",
          );
          expect(durable.stats.redelivered).toBeGreaterThanOrEqual(1);
          const events = await next.node.twins.history({ type: "thermostat", id: twin }, { limit: 100 });
          expect(events.filter((e) => e.type === "$reported")).toHaveLength(1);
          expect(events[0]?.causation).toBe(`${twin}-m1`);
          const stats = next.node.ingress.stats;
          // A redelivered report already in the log is acknowledged without being applied again.
          if (mode === "after-persist") {
            expect(stats.applied).toBe(0);
            expect(durable.stats.alreadyPersisted).toBe(1);
          } else expect(stats.applied).toBe(1);
          expect((await next.client.getTwin({ type: "thermostat", id: twin })).reported).toEqual({
            temperature: 18.5,
          });
        } finally {
          await next.stop();
        }
      } finally {
        if (child.exitCode === null && child.signalCode === null) await kill(child);
        await wire.close();
      }
    }, 60_000);
  }

  it("drops a persisted report of a killed node when the successor takes its shard (it is in the log)", async () => {
    // The report is persisted, its ack lost with its node; the successor takes the shard out of the
    // dead node's consumer, and its own consumer delivers the report again before the 20 newer
    // reports of the twin (stream order): it is found in the twin's log and not applied again.
    const ackWait = "8s";
    const db = join(dir, "late.db");
    const twin = "crash-late";
    const { child, saw } = await startCrashNode(db, "after-persist", twin, ackWait);
    const wire = await deviceTransport();
    try {
      const device = new DeviceClient({ transport: wire, type: "thermostat", id: twin });
      await device.report({ temperature: 18.5 }, { messageId: `${twin}-m0` });
      await saw("COMMITTED");
      await kill(child);
      const next = await startSuccessor(db, ackWait);
      try {
        for (let i = 1; i <= 20; i++)
          await device.report({ temperature: 19 + i / 10 }, { messageId: `${twin}-m${i}` });
        const durable = next.node.devices.durable!;
        await eventually(
          () => (next.node.ingress.stats.applied >= 20 ? true : undefined),
          "20 newer reports applied",
        );
        await eventually(
          () => (durable.stats.redelivered >= 1 && durable.stats.acked >= 21 ? true : undefined),
          "the redelivered report acknowledged",
          20_000,
        );
        const events = await next.node.twins.history({ type: "thermostat", id: twin }, { limit: 1000 });
        const reports = events.filter((e) => e.type === "$reported").map((e) => e.causation);
        expect(reports).toEqual(Array.from({ length: 21 }, (_, i) => `${twin}-m${i}`));
        expect(durable.stats.alreadyPersisted).toBe(1);
      } finally {
        await next.stop();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) await kill(child);
      await wire.close();
    }
  }, 60_000);
});
