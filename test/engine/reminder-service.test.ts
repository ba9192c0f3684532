/**
 * The reminder poll reads only what may be due: each owned shard's earliest entry once, then the
 * due entries of a shard only when its earliest known time falls within the horizon. A fake index
 * (this is a unit test of the service) records every read, by shard.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import type { ReminderIndexEntry } from "../../runtime/core/records.ts";
import { type ReminderIndex, ReminderService } from "../../runtime/engine/reminder-service.ts";

class FakeIndex implements ReminderIndex {
  entries: ReminderIndexEntry[] = [];
  /** Every read: which call, which shards. */
  readonly reads: { call: "due" | "earliest"; shards: readonly number[] | "all" }[] = [];
  failNext = false;

  async dueReminders(shards: readonly number[] | "all", until: number, limit: number) {
    this.#read("due", shards);
    return this.entries
      .filter((e) => e.dueAt <= until && (shards === "all" || shards.includes(e.shard)))
      .sort((a, b) => a.dueAt - b.dueAt)
      .slice(0, limit);
  }

  async earliestReminders(shards: readonly number[] | "all") {
    this.#read("earliest", shards);
    const earliest = new Map<number, number>();
    for (const e of this.entries) {
      if (shards !== "all" && !shards.includes(e.shard)) continue;
      const known = earliest.get(e.shard);
      if (known === undefined || e.dueAt < known) earliest.set(e.shard, e.dueAt);
    }
    return earliest;
  }

  #read(call: "due" | "earliest", shards: readonly number[] | "all") {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("index unavailable");
    }
    this.reads.push({ call, shards: shards === "all" ? "all" : [...shards].sort((a, b) => a - b) });
  }

  /** The reads since the last call. */
  take() {
    return this.reads.splice(0);
  }
}

const POLL = 1_000;
const RESCAN = 60_000;
const ALL_SHARDS = Array.from({ length: 256 }, (_, i) => i);

/** Each shard's owner epoch (1 unless a test moves it: the shard was lost and regained). */
function setup(
  owned: () => readonly number[] | "all" = () => ALL_SHARDS,
  epochs = new Map<number, number>(),
) {
  const clock = new ManualClock(0);
  const index = new FakeIndex();
  const fired: string[] = [];
  let failDeliveries = 0;
  const attempts = { count: 0 };
  const service = new ReminderService(
    index,
    clock,
    async (entry) => {
      attempts.count++;
      if (failDeliveries > 0) {
        failDeliveries--;
        throw new Error("twin unavailable");
      }
      fired.push(`${entry.name}@${clock.now()}`);
      // The twin persists the firing: its index entry goes.
      index.entries = index.entries.filter((e) => !(e.id === entry.id && e.name === entry.name));
    },
    { ownedShards: owned, writerFor: (shard) => ({ node: "n", epoch: epochs.get(shard) ?? 1 }) },
    { pollMs: POLL, batch: 100, rescanMs: RESCAN },
    () => {},
  );
  const entry = (shard: number, name: string, dueAt: number): ReminderIndexEntry => ({
    shard,
    type: "alarm",
    id: `t${shard}`,
    name,
    dueAt,
  });
  return {
    clock,
    index,
    fired,
    service,
    entry,
    attempts,
    failDeliveries: (n: number) => {
      failDeliveries = n;
    },
  };
}

describe("reminder service: what a poll reads", () => {
  it("reads each owned shard's earliest entry once, then nothing while no shard has anything due", async () => {
    const { clock, index, service } = setup();
    service.start();
    await clock.advance(0);
    expect(index.take()).toEqual([{ call: "earliest", shards: ALL_SHARDS }]);
    await clock.advance(30 * POLL);
    expect(index.take()).toEqual([]);
    await service.stop();
  });

  it("fires an entry found at start on time, reading its shard's due entries only when it comes near", async () => {
    const { clock, index, fired, service, entry } = setup();
    index.entries = [entry(7, "later", 10 * 60_000 + 500)];
    service.start();
    await clock.advance(0);
    index.take();
    await clock.advance(10 * 60_000 - 3 * POLL);
    // Rescans only (the earliest entries again), no due reads before the entry is near.
    expect(index.take().every((read) => read.call === "earliest")).toBe(true);
    await clock.advance(4 * POLL);
    expect(fired).toEqual([`later@${10 * 60_000 + 500}`]);
    expect(index.take()).toContainEqual({ call: "due", shards: [7] });
    await service.stop();
  });

  it("lowers a shard's earliest time by what this node's commits set, and reads it again once empty", async () => {
    const { clock, index, fired, service, entry } = setup();
    service.start();
    await clock.advance(0);
    index.take();
    const set = entry(42, "soon", 5 * POLL);
    index.entries.push(set); // committed by this node, then tracked
    service.track([set]);
    await clock.advance(5 * POLL);
    expect(fired).toEqual([`soon@${5 * POLL}`]);
    const reads = index.take();
    expect(
      reads.filter((r) => r.call === "due").every((r) => r.shards.length === 1 && r.shards[0] === 42),
    ).toBe(true);
    // The shard read empty: its earliest entry is read once more, then the polls read nothing.
    await clock.advance(3 * POLL);
    expect(index.take()).toContainEqual({ call: "earliest", shards: [42] });
    await clock.advance(10 * POLL);
    expect(index.take()).toEqual([]);
    await service.stop();
  });

  it("finds an entry it did not write after the shard is said to have changed, or at the next rescan", async () => {
    const { clock, index, fired, service, entry } = setup();
    service.start();
    await clock.advance(0);
    index.take();
    index.entries.push(entry(3, "repaired", 2 * POLL), entry(9, "foreign", 2 * POLL));
    service.indexMayHaveChanged(3); // a commit of a twin of shard 3 failed with an unknown outcome, and landed
    await clock.advance(3 * POLL);
    expect(fired).toEqual([`repaired@${2 * POLL}`]);
    await clock.advance(RESCAN);
    expect(fired).toEqual([`repaired@${2 * POLL}`, `foreign@${RESCAN}`]);
    await service.stop();
  });

  it("reads a shard when this node starts owning it, and forgets shards it gave up", async () => {
    let owned: readonly number[] = [1, 2];
    const { clock, index, fired, service, entry } = setup(() => owned);
    index.entries = [entry(5, "moved", 30 * POLL)];
    service.start();
    await clock.advance(0);
    expect(index.take()).toEqual([{ call: "earliest", shards: [1, 2] }]);
    owned = [2, 5];
    await clock.advance(POLL);
    expect(index.take()).toEqual([{ call: "earliest", shards: [5] }]);
    await clock.advance(30 * POLL);
    expect(fired).toEqual([`moved@${30 * POLL}`]);
    await service.stop();
  });

  it("reads a shard again when it was lost and regained between two polls (a new owner epoch)", async () => {
    const epochs = new Map<number, number>();
    const { clock, index, fired, service, entry } = setup(() => [1, 2], epochs);
    service.start();
    await clock.advance(0);
    expect(index.take()).toEqual([{ call: "earliest", shards: [1, 2] }]);
    // Between two polls: shard 2 went to another node, which set a reminder, and came back.
    index.entries.push(entry(2, "theirs", 3 * POLL));
    epochs.set(2, 2);
    await clock.advance(POLL);
    expect(index.take()).toEqual([
      { call: "earliest", shards: [2] },
      { call: "due", shards: [2] },
    ]);
    await clock.advance(2 * POLL);
    expect(fired).toEqual([`theirs@${3 * POLL}`]);
    await service.stop();
  });

  it("a twin's reminders tracked at its load or reload need no read, and fire on time", async () => {
    const { clock, index, fired, service, entry } = setup();
    service.start();
    await clock.advance(0);
    index.take();
    // A reload found another writer's commit, with its index row: the engine tracks the twin's reminders.
    const theirs = entry(9, "theirs", 10 * POLL);
    index.entries.push(theirs);
    service.track([theirs]);
    await clock.advance(7 * POLL);
    expect(index.take()).toEqual([]);
    await clock.advance(3 * POLL);
    expect(fired).toEqual([`theirs@${10 * POLL}`]);
    await service.stop();
  });

  it('with "all" shards, reads the earliest entries of all at once, then only the shards it must', async () => {
    const { clock, index, fired, service, entry } = setup(() => "all");
    index.entries = [entry(200, "a", 4 * POLL)];
    service.start();
    await clock.advance(0);
    expect(index.take()).toEqual([{ call: "earliest", shards: "all" }]);
    await clock.advance(5 * POLL);
    expect(fired).toEqual([`a@${4 * POLL}`]);
    expect(index.take()).toContainEqual({ call: "due", shards: [200] });
    index.entries.push(entry(11, "b", 8 * POLL));
    service.indexMayHaveChanged(11);
    await clock.advance(POLL);
    expect(index.take()).toContainEqual({ call: "earliest", shards: [11] });
    await clock.advance(4 * POLL);
    expect(fired).toEqual([`a@${4 * POLL}`, `b@${8 * POLL}`]);
    await service.stop();
  });

  it("retries a failed delivery at a later poll, and a failed read at the next one", async () => {
    const { clock, index, fired, service, entry, attempts, failDeliveries } = setup();
    index.entries = [entry(8, "retry", 2 * POLL)];
    index.failNext = true; // the first poll's read fails
    failDeliveries(1);
    service.start();
    await clock.advance(0);
    expect(index.take()).toEqual([]);
    // The poll at 1 s reads it; its delivery at 2 s fails; the poll at 2 s finds it still in the
    // index and delivers it again.
    await clock.advance(2 * POLL);
    expect(attempts.count).toBe(2);
    expect(fired).toEqual([`retry@${2 * POLL}`]);
    await clock.advance(5 * POLL);
    expect(attempts.count).toBe(2);
    await service.stop();
  });
});
