import { InvalidArgument, type Reminder, Twin, z } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

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
