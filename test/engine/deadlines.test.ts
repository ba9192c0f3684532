import { Twin, z } from "doppel";
import { TestNode } from "doppel/testing";
import { describe, expect, it } from "vitest";
import { ManualClock, settle } from "../../runtime/core/clock.ts";
import { Deadlines } from "../../runtime/engine/deadlines.ts";

describe("deadlines on one timer", () => {
  it("expires each wait exactly at its deadline, in any order of adding, and never a cancelled one", async () => {
    const clock = new ManualClock(0);
    const deadlines = new Deadlines(clock);
    const expired: string[] = [];
    const at = (name: string, ms: number) => deadlines.add(ms, () => expired.push(`${name}@${clock.now()}`));
    at("c", 300);
    at("a", 100);
    const b = at("b", 200);
    at("a2", 100);
    at("d", 10_000);
    b.cancel();
    await clock.advance(99);
    expect(expired).toEqual([]);
    await clock.advance(1);
    expect(expired).toEqual(["a@100", "a2@100"]);
    await clock.advance(250);
    expect(expired).toEqual(["a@100", "a2@100", "c@300"]);
    // Added after others expired, earlier than the one waiting: armed for it.
    at("e", 400);
    await clock.advance(50);
    expect(expired.at(-1)).toBe("e@400");
    await clock.advance(10_000);
    expect(expired.at(-1)).toBe("d@10000");
    expect(expired).toHaveLength(5);
  });

  it("keeps waits of one bucket that are not due yet (deadlines a few ms apart)", async () => {
    const clock = new ManualClock(0);
    const deadlines = new Deadlines(clock);
    const expired: number[] = [];
    for (const ms of [130, 129, 131, 140]) deadlines.add(ms, () => expired.push(ms));
    await clock.advance(129);
    expect(expired).toEqual([129]);
    await clock.advance(1);
    expect(expired).toEqual([129, 130]);
    await clock.advance(10);
    expect(expired).toEqual([129, 130, 131, 140]);
  });
});

let release: () => void = () => {};

/** A twin whose `slow` command answers only when the test releases it, counting its turns. */
class Slow extends Twin<{ done: number }, { type: "done" }> {
  static readonly type = "slow";
  static readonly commands = { slow: z.object({}), quick: z.object({}) };
  initialState() {
    return { done: 0 };
  }
  apply(state: { done: number }) {
    return { done: state.done + 1 };
  }
  async slow() {
    await new Promise<void>((resolve) => {
      release = resolve;
    });
    this.emit({ type: "done" });
    return "slow";
  }
  quick() {
    this.emit({ type: "done" });
    return "quick";
  }
}

describe("a caller's deadline on its turn", () => {
  it("ends the wait with DEADLINE_EXCEEDED naming the call, for the running turn and one queued behind it; the turns still complete", async () => {
    const test = await TestNode.start({ twins: [Slow] });
    const ref = { type: "slow", id: "s1" };
    const deadline = test.clock.now() + 1000;
    const outcomes: string[] = [];
    const note = (what: string) => (error: unknown) => outcomes.push(`${what}: ${(error as Error).message}`);
    const running = test.twins.invoke(ref, "slow", {}, { deadline }).catch(note("slow"));
    const queued = test.twins.invoke(ref, "quick", {}, { deadline: deadline + 500 }).catch(note("quick"));
    await test.clock.advance(999);
    await settle();
    expect(outcomes).toEqual([]);
    await test.clock.advance(1);
    await running;
    expect(outcomes).toEqual(["slow: slow/s1.slow: no answer within 1000 ms"]);
    await test.clock.advance(500);
    await queued;
    expect(outcomes.at(-1)).toBe("quick: slow/s1.quick: no answer within 1500 ms");
    // The running turn completes and is persisted; the queued one is dropped: its deadline has passed.
    await test.clock.advance(1);
    release();
    await test.idle();
    expect((await test.twins.get(ref)).state).toEqual({ done: 1 });
    await test.stop();
  });
});
