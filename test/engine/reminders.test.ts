import { InvalidArgument, type Reminder, Twin, z } from "doppel";
import { type EventStore, MemoryEventStore } from "doppel/node";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";

type AlarmEvent = { readonly type: "rang"; readonly name: string; readonly at: number };

/** Records every reminder it receives. */
class AlarmClock extends Twin<{ readonly rang: readonly string[] }, AlarmEvent> {
  static readonly type = "alarmclock";
  static readonly commands = {
    set: z.object({
      name: z.string(),
      afterMs: z.number().int().min(0),
      everyMs: z.number().int().optional(),
    }),
    stop: z.object({ name: z.string() }),
    list: z.object({}),
  };

  initialState() {
    return { rang: [] };
  }

  apply(state: { readonly rang: readonly string[] }, event: AlarmEvent) {
    return { rang: [...state.rang, event.name] };
  }

  set({ name, afterMs, everyMs }: { name: string; afterMs: number; everyMs?: number | undefined }) {
    this.schedule(
      name,
      { after: afterMs },
      { note: `from ${name}` },
      everyMs === undefined ? {} : { every: everyMs },
    );
  }

  stop({ name }: { name: string }) {
    this.cancel(name);
  }

  list() {
    return this.reminders.map((r) => ({ name: r.name, dueAt: r.dueAt.getTime() }));
  }

  override onReminder(reminder: Reminder): void {
    this.emit({ type: "rang", name: reminder.name, at: this.now.getTime() });
  }
}

describe("durable reminders", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [AlarmClock] });
  });
  afterEach(async () => {
    await test.stop();
  });

  const rang = async (id: string) => (await test.twin(AlarmClock, id).get()).state["rang"];

  it("fires once when due, not before", async () => {
    await test.twin(AlarmClock, "a").invoke("set", { name: "wake", afterMs: 60_000 });
    await test.advance("59s");
    expect(await rang("a")).toEqual([]);
    await test.advance("2s");
    expect(await rang("a")).toEqual(["wake"]);
    await test.advance("10m");
    expect(await rang("a")).toEqual(["wake"]);
    expect(await test.twin(AlarmClock, "a").invoke("list", {})).toEqual([]);
  });

  it("fires after the twin was passivated", async () => {
    await test.twin(AlarmClock, "a").invoke("set", { name: "wake", afterMs: 3_600_000 });
    await test.passivateAll();
    expect(test.resident).toBe(0);
    await test.advance("61m");
    expect(await rang("a")).toEqual(["wake"]);
  });

  it("fires after the node restarted, even when it fell due while the node was down", async () => {
    await test.twin(AlarmClock, "a").invoke("set", { name: "wake", afterMs: 120_000 });
    await test.node.stop();
    await test.clock.advance(10 * 60_000);
    await test.restart();
    await test.advance("1s");
    expect(await rang("a")).toEqual(["wake"]);
  });

  it("repeats a reminder with every until it is cancelled", async () => {
    await test.twin(AlarmClock, "a").invoke("set", { name: "tick", afterMs: 10_000, everyMs: 10_000 });
    for (let i = 0; i < 3; i++) await test.advance("10s");
    expect(await rang("a")).toEqual(["tick", "tick", "tick"]);
    await test.twin(AlarmClock, "a").invoke("stop", { name: "tick" });
    await test.advance("1m");
    expect(await rang("a")).toEqual(["tick", "tick", "tick"]);
  });

  it("replaces a reminder set again under the same name", async () => {
    const a = test.twin(AlarmClock, "a");
    await a.invoke("set", { name: "wake", afterMs: 10_000 });
    await a.invoke("set", { name: "wake", afterMs: 60_000 });
    await test.advance("30s");
    expect(await rang("a")).toEqual([]);
    await test.advance("31s");
    expect(await rang("a")).toEqual(["wake"]);
  });

  it("refuses bad reminder names and too short periods", async () => {
    const a = test.twin(AlarmClock, "a");
    await expect(a.invoke("set", { name: "no spaces", afterMs: 1 })).rejects.toThrow("reminder name");
    await expect(a.invoke("set", { name: "fast", afterMs: 1, everyMs: 10 })).rejects.toThrow(
      "at least 1000 ms",
    );
    await expect(a.invoke("set", { name: "fast", afterMs: 1, everyMs: 10 })).rejects.toBeInstanceOf(
      InvalidArgument,
    );
  });
});

describe("durable reminders: what the reminder poll learns from loads and failed writes", () => {
  const nodes: TestNode[] = [];
  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.stop();
  });

  /** `store`, counting its reads of each shard's earliest reminder. */
  function counting(store: MemoryEventStore) {
    const reads = { earliest: 0 };
    const proxy = new Proxy(store, {
      get(target, property) {
        if (property === "earliestReminders") reads.earliest++;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as EventStore;
    return { store: proxy, reads };
  }

  it("a twin's activation tracks its reminders without reading the index", async () => {
    const { store, reads } = counting(new MemoryEventStore());
    const test = await TestNode.start({ twins: [AlarmClock], store });
    nodes.push(test);
    await test.twin(AlarmClock, "a").invoke("set", { name: "wake", afterMs: 30_000 });
    await test.passivateAll();
    await test.advance("1s");
    const before = reads.earliest;
    await test.twin(AlarmClock, "a").invoke("list", {}); // loaded again
    expect(test.resident).toBe(1);
    await test.advance("2s");
    expect(reads.earliest).toBe(before);
    await test.advance("28s");
    expect(await rangOn(test, "a")).toEqual(["wake"]);
  });

  it("a reminder another writer set is fired within a poll after this node's write conflicted with it", async () => {
    const store = new MemoryEventStore();
    const clock = new ManualClock();
    const a = await TestNode.start({ twins: [AlarmClock], store, clock });
    const b = await TestNode.start({ twins: [AlarmClock], store, clock });
    nodes.push(a, b);
    await b.node.engine.reminders.stop(); // only A fires reminders
    await a.twin(AlarmClock, "t").invoke("set", { name: "late", afterMs: 600_000 });
    await a.advance("2s"); // A's polls have read the index since
    await b.twin(AlarmClock, "t").invoke("set", { name: "wake", afterMs: 5_000 });
    // A's copy is behind: its write conflicts, and the twin reloads at its next turn.
    await expect(
      a.twin(AlarmClock, "t").invoke("set", { name: "late", afterMs: 500_000 }),
    ).rejects.toMatchObject({
      details: { reason: "conflict" },
    });
    await a.advance("6s");
    expect(await rangOn(a, "t")).toEqual(["wake"]);
  });
});

async function rangOn(test: TestNode, id: string) {
  return (await test.twin(AlarmClock, id).get()).state["rang"];
}
