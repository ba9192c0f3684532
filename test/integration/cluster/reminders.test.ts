/**
 * Durable reminders follow their shard, on node processes (real NATS, Redis, Cassandra): a
 * reminder already due on a shard's old owner is fired by the new owner after the shard moves —
 * when a node joins, when its owner leaves gracefully (SIGTERM), and when its owner is killed
 * (kill -9) — once each in the twin's log, written by the shard's new owner.
 *
 * So that the move, not the clock, decides who fires: the old owner's reminder service is switched
 * off (the fixture's switch, fixtures/node.ts) before the reminders are set, and each reminder is
 * due at once. The old owner then holds due reminders it never fires; only the new owner, reading
 * the moved shard's reminder index, can. Every wait polls the log with a generous overall limit.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import {
  ALARM_CLOCK_TWINS,
  eventually,
  ownershipSettled,
  ringAssignment,
  runId,
  SHARDS,
  TestCluster,
} from "./harness.ts";

const CLOCK = "alarmclock";
const WAIT_MS = 120_000;

/** `perShard` alarm-clock ids in each of `shards`. */
function clocksIn(prefix: string, shards: readonly number[], perShard = 2): string[] {
  const wanted = new Set(shards);
  const count = new Map<number, number>();
  const ids: string[] = [];
  for (let n = 0; [...wanted].some((s) => (count.get(s) ?? 0) < perShard); n++) {
    const id = `${prefix}-${n}`;
    const shard = shardOf(CLOCK, id, SHARDS);
    if (!wanted.has(shard) || (count.get(shard) ?? 0) >= perShard) continue;
    count.set(shard, (count.get(shard) ?? 0) + 1);
    ids.push(id);
  }
  return ids;
}

/** Shards whose assigned node differs between the two memberships. */
function movedShards(from: readonly string[], to: readonly string[]): number[] {
  const before = ringAssignment(from);
  const after = ringAssignment(to);
  return before.flatMap((node, shard) => (node === after[shard] ? [] : [shard]));
}

describe("reminders fire on a shard's new owner (node processes)", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  /** Every reminder set, to check again at the end: twin id → reminder name → expected writer. */
  const expected = new Map<string, Map<string, string>>();

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("reminders", undefined, [ALARM_CLOCK_TWINS]));
    await cluster.start("r1", "r2");
  });
  afterAll(async () => {
    await cluster?.close();
    await store?.close();
  });

  /** The writers of the `rang` events of reminder `name` in each twin's log. */
  async function firings(ids: readonly string[], name: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const id of ids) {
      const events = await store.readHistory({ type: CLOCK, id }, { limit: 10_000 });
      out.set(
        id,
        events.filter((e) => e.type === "rang" && e.data["name"] === name).map((e) => e.writer.node),
      );
    }
    return out;
  }

  /** Sets reminder `name`, due now, on each twin (through `via`); none can fire yet. */
  async function setDue(via: string, ids: readonly string[], name: string, owners: readonly string[]) {
    for (const id of ids) {
      await cluster.node(via).client.invoke({ type: CLOCK, id }, "set", { name, at: Date.now() });
      const names = expected.get(id) ?? new Map<string, string>();
      names.set(name, owners[shardOf(CLOCK, id, SHARDS)]!);
      expected.set(id, names);
    }
    // The old owners' reminder services are off: nothing has fired (or can).
    for (const writers of (await firings(ids, name)).values()) expect(writers).toEqual([]);
  }

  /** Waits until every twin's reminder `name` has fired; each once, by the shard's owner in `owners`. */
  async function expectFiredOnce(ids: readonly string[], name: string, owners: readonly string[]) {
    let missing: string[] = [];
    const fired = await eventually(
      async () => {
        const now = await firings(ids, name);
        missing = ids.filter((id) => now.get(id)!.length === 0);
        return missing.length === 0 ? now : undefined;
      },
      () => `reminder ${name} to fire on ${missing.length} twin(s): ${missing.slice(0, 5).join(", ")}`,
      WAIT_MS,
      250,
    );
    for (const id of ids)
      expect(fired.get(id), `${id} (shard ${shardOf(CLOCK, id, SHARDS)})`).toEqual([
        owners[shardOf(CLOCK, id, SHARDS)],
      ]);
  }

  it("a joining node fires the due reminders of the shards it takes", async () => {
    onTestFailed(() => cluster.dumpLogs());
    await cluster.settled(["r1", "r2"]);
    const moved = movedShards(["r1", "r2"], ["r1", "r2", "r3"]);
    expect(moved.length).toBeGreaterThan(0);
    const ids = clocksIn(`${tag}-join`, moved);
    await Promise.all(["r1", "r2"].map((id) => cluster.node(id).reminders(false)));
    await setDue("r1", ids, "join", ringAssignment(["r1", "r2", "r3"]));
    await cluster.spawn("r3");
    await cluster.settled(["r1", "r2", "r3"]);
    await expectFiredOnce(ids, "join", ringAssignment(["r1", "r2", "r3"]));
    await Promise.all(["r1", "r2"].map((id) => cluster.node(id).reminders(true)));
  }, 300_000);

  it("after a graceful leave (SIGTERM), the shards' new owners fire the reminders the leaver held", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const members = ["r1", "r2", "r3"];
    await ownershipSettled(cluster, members);
    const leaverShards = ringAssignment(members).flatMap((node, shard) => (node === "r3" ? [shard] : []));
    expect(leaverShards.length).toBeGreaterThan(0);
    const ids = clocksIn(`${tag}-leave`, leaverShards);
    await cluster.node("r3").reminders(false);
    await setDue("r1", ids, "leave", ringAssignment(["r1", "r2"]));
    expect(await cluster.node("r3").terminate()).toBe(0);
    await cluster.settled(["r1", "r2"]);
    await expectFiredOnce(ids, "leave", ringAssignment(["r1", "r2"]));
  }, 300_000);

  it("after kill -9 of the owner, the survivors fire the reminders it held", async () => {
    onTestFailed(() => cluster.dumpLogs());
    await cluster.spawn("r4");
    const members = ["r1", "r2", "r4"];
    await cluster.settled(members);
    await ownershipSettled(cluster, members);
    const victimShards = ringAssignment(members).flatMap((node, shard) => (node === "r4" ? [shard] : []));
    expect(victimShards.length).toBeGreaterThan(0);
    const ids = clocksIn(`${tag}-kill`, victimShards);
    await cluster.node("r4").reminders(false);
    await setDue("r2", ids, "kill", ringAssignment(["r1", "r2"]));
    await cluster.node("r4").crash();
    await cluster.settled(["r1", "r2"]);
    await expectFiredOnce(ids, "kill", ringAssignment(["r1", "r2"]));

    // Every reminder of the three moves is still in its twin's log exactly once, by the new owner
    // (the later moves gave a second firing every chance to appear).
    for (const [id, names] of expected) {
      for (const [name, owner] of names) {
        expect((await firings([id], name)).get(id), `${id} ${name}`).toEqual([owner]);
      }
    }
  }, 300_000);
});
