import { describe, expect, it } from "vitest";
import { Limiter } from "../../../runtime/persistence/cassandra/limiter.ts";

describe("cassandra limiter", () => {
  it("runs at most max tasks at once, in arrival order, and frees the slot of a failed task", async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const gates: (() => void)[] = [];
    const tasks = Array.from({ length: 6 }, (_, i) =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        await new Promise<void>((resolve) => gates.push(resolve));
        running--;
        if (i === 1) throw new Error("boom");
        return i;
      }),
    );
    const settled = Promise.allSettled(tasks);
    for (let released = 0; released < 6; released++) {
      while (gates.length === 0) await new Promise((resolve) => setImmediate(resolve));
      expect(limiter.running).toBeLessThanOrEqual(2);
      gates.shift()!();
    }
    const results = await settled;
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
    expect(limiter.running).toBe(0);
    expect(limiter.waiting).toBe(0);
  });
});
