import { describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
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
