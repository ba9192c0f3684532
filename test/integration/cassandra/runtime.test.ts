/**
 * The runtime on Cassandra: the same twin driven through the engine ends in the same state on the
 * embedded store and on Cassandra; two nodes writing one twin end in a ConcurrencyConflict and a
 * quarantine, never a merge; an unreachable cluster at start is named and retried.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../runtime/core/clock.ts";
import { type DoppelError, ErrorCode } from "../../../runtime/core/errors.ts";
import type { JsonObject } from "../../../runtime/core/json.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import type { EventStore } from "../../../runtime/persistence/event-store.ts";
import { SqliteEventStore } from "../../../runtime/persistence/sqlite-store.ts";
import { TestNode } from "../../../runtime/testing/test-node.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { ensureCassandra, openStore, runId } from "./harness.ts";
import { Meter } from "./twins.ts";

const KEYSPACE = "doppel_it_runtime";
const RUN = runId();

let cassandra: CassandraEventStore;

beforeAll(async () => {
  await ensureCassandra();
  cassandra = await openStore(KEYSPACE);
});

afterAll(async () => {
  await cassandra?.close();
});

/** Waits (in real time: the store does real I/O) until no turn runs and nothing waits to be written. */
async function quiet(test: TestNode): Promise<void> {
  const engine = test.node.engine;
  for (let calm = 0, i = 0; calm < 5 && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const busy = [...engine.catalog.activations()].some((a) => a.busy || a.status === "loading");
    calm = busy || engine.committer.backlog > 0 ? 0 : calm + 1;
  }
}

/** Drives one thermostat through reports, commands, reminders, passivation and a restart. */
async function scenario(store: EventStore, id: string) {
  const test = await TestNode.start({
    twins: [Thermostat],
    store,
    clock: new ManualClock(Date.UTC(2026, 0, 1)),
    config: { limits: { snapshotEvery: 3 } },
  });
  const t = test.twin(Thermostat, id);
  const outcomes: unknown[] = [];
  // Reminders are found by polling the store's index on the (manual) clock's timers; a store with
  // real I/O answers after the clock has moved on, so advance to each due time and poll there.
  const advanceTo = async (duration: "5m" | "1m" | "30m") => {
    await test.advance(duration);
    await test.node.engine.reminders.poll(); // (one still in flight from earlier times)
    await test.node.engine.reminders.poll(); // a poll at this time
    await test.advance(0);
    await quiet(test);
  };
  const step = async (what: () => Promise<unknown>) => {
    try {
      outcomes.push(await what());
    } catch (error) {
      outcomes.push((error as DoppelError).code ?? String(error));
    }
  };
  try {
    await step(() => t.report({ temperature: 18.5, heating: false }, "m-1"));
    await step(() => t.invoke("setTarget", { celsius: 23 }));
    await step(() => t.report({ temperature: 18.5 }, "m-1")); // a redelivered duplicate
    await step(() => t.report({ temperature: 35 }, "m-2")); // raises the alarm, schedules escalation
    await step(() => t.invoke("acknowledgeAlarm", {})); // refused: still too hot
    await advanceTo("5m"); // escalates
    await advanceTo("1m");
    await step(() => t.report({ temperature: 22, firmware: "1.2.3" }, "m-3"));
    await step(() => t.invoke("acknowledgeAlarm", {}));
    await step(() => t.invoke("boost", { minutes: 30 }));
    await step(() => t.desire({ heating: true }));
    await test.passivateAll();
    await advanceTo("30m"); // the boost ends: the twin is activated again from the store
    await advanceTo("1m");
    await step(() => t.invoke("setMode", { mode: "off" }));
    await test.restart(); // a new node over the same store replays the twin
    const view = await t.get();
    // Commit ids are random and a node's writer epoch is taken at its start: compare the rest.
    const events = (await t.events()).map(({ commitId: _c, writer, ...rest }) => ({
      ...rest,
      node: writer.node,
    }));
    const resident = await t.invoke("setMode", { mode: "auto" }); // state after replay answers commands
    return { outcomes, view, events, resident };
  } finally {
    await test.stop();
  }
}

describe("runtime on cassandra", () => {
  it("a twin driven through the runtime ends in the same state on the embedded store and on Cassandra", async () => {
    const id = `same-${RUN}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-same-"));
    const sqlite = new SqliteEventStore({ path: path.join(dir, "store.db") });
    try {
      const embedded = await scenario(sqlite, id);
      const onCassandra = await scenario(cassandra, id);
      expect(onCassandra).toEqual(embedded);
      expect(embedded.view.version).toBeGreaterThan(8);
      expect(embedded.outcomes).toContain(ErrorCode.FailedPrecondition);
      expect(embedded.events.map((e) => e.type)).toContain("alarmEscalated");
      // The snapshot Cassandra holds is the one SQLite holds (snapshots are written in the
      // background after a commit: wait for the last one to land).
      const a = await sqlite.loadTwin(embedded.view);
      let b = await cassandra.loadTwin(embedded.view);
      for (let i = 0; i < 100 && b.snapshot?.seq !== a.snapshot?.seq; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        b = await cassandra.loadTwin(embedded.view);
      }
      expect(b.snapshot).toEqual(a.snapshot);
      expect(b.events.map((e) => e.seq)).toEqual(a.events.map((e) => e.seq));
    } finally {
      await sqlite.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("two nodes writing the same twin: the older one is fenced off by the store; nothing is merged, nothing quarantined", async () => {
    const start = async (nodeId: string, store: EventStore) =>
      DoppelNode.start(
        { nodeId, store: { kind: "memory" }, grpc: { listen: false } },
        { twins: [Meter], store, logger: silentLogger() },
      );
    const storeB = await openStore(KEYSPACE);
    const nodeA = await start("node-a", cassandra);
    const nodeB = await start("node-b", storeB);
    const ref = { type: Meter.type, id: `split-${RUN}` };
    const add = (node: DoppelNode, by: number) => node.twins.invoke(ref, "add", { by } as JsonObject);
    try {
      expect((await add(nodeA, 1)).version).toBe(1);
      // Node B (as if it had taken the shard over) activates the twin and appends version 2.
      expect((await add(nodeB, 10)).version).toBe(2);
      // Node A still has the twin resident at version 1: the store refuses its append at version 2.
      const failure = await add(nodeA, 100).then(
        () => undefined,
        (error: unknown) => error as DoppelError,
      );
      // A single node writes at the epoch of its start, so B (started later) is newer: the store
      // fences A off (a clean not-owner refusal), and A's reload sees B's newer epoch.
      expect(failure?.code).toBe(ErrorCode.Unavailable);
      expect(failure?.details).toMatchObject({ retry: "not-owner", reason: "stale-epoch" });
      await expect(add(nodeA, 1000)).rejects.toMatchObject({
        code: ErrorCode.Unavailable,
        details: { retry: "not-owner" },
      });
      expect((await add(nodeB, 1000)).version).toBe(3);
      const loaded = await cassandra.loadTwin(ref);
      expect(loaded.quarantine).toBeUndefined();
      expect(loaded.events.map((e) => [e.seq, e.writer.node, e.data["by"]])).toEqual([
        [1, "node-a", 1],
        [2, "node-b", 10],
        [3, "node-b", 1000],
      ]);
    } finally {
      await nodeA.stop();
      await nodeB.stop();
      await storeB.close();
    }
  });

  it("Cassandra unreachable at start: a clear error naming the contact points, after retries with backoff", async () => {
    const warnings: unknown[] = [];
    const logger = silentLogger();
    const warn = logger.warn.bind(logger);
    logger.warn = ((obj: unknown, ...rest: unknown[]) => {
      warnings.push(obj);
      return (warn as (...args: unknown[]) => void)(obj, ...rest);
    }) as typeof logger.warn;
    const started = Date.now();
    const failure = await DoppelNode.start(
      {
        nodeId: "lonely",
        grpc: { listen: false },
        store: {
          kind: "cassandra",
          contactPoints: ["127.0.0.1:1"],
          keyspace: "doppel_it_never",
          startupRetry: "2s",
        },
      },
      { twins: [Meter], logger },
    ).then(
      () => undefined,
      (error: unknown) => error as DoppelError,
    );
    expect(failure?.code).toBe(ErrorCode.Unavailable);
    expect(failure?.message).toMatch(
      /cannot reach Cassandra at 127\.0\.0\.1:1 \(local data center datacenter1\) after [2-9] attempts/,
    );
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
  });
});
