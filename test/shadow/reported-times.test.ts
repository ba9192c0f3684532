import { describe, expect, it } from "vitest";
import { lateLeavesDropped, stampReported } from "../../runtime/shadow/reported-times.ts";

describe("reported field times", () => {
  it("stamps every leaf a patch sets, nested objects leaf by leaf, and forgets deleted keys", () => {
    let times = stampReported({}, { a: 1, b: { c: 2, d: { e: 3 } } }, 100);
    expect(times).toEqual({ a: 100, b: { c: 100, d: { e: 100 } } });
    times = stampReported(times, { b: { c: 5 }, a: null }, 200);
    expect(times).toEqual({ b: { c: 200, d: { e: 100 } } });
    // A leaf replaced by an object, and an object replaced by a leaf.
    times = stampReported(times, { b: 7, x: { y: 1 } }, 300);
    expect(times).toEqual({ b: 300, x: { y: 300 } });
  });

  it("drops the leaves of a late patch that the twin holds with a newer time, keeps the rest", () => {
    const times = { a: 200, b: { c: 100, d: 300 } };
    expect(lateLeavesDropped({ a: 1, b: { c: 2, d: 3 }, e: 4 }, times, 150)).toEqual({ b: { c: 2 }, e: 4 });
    // Equal times are not newer: applied.
    expect(lateLeavesDropped({ a: 9 }, times, 200)).toEqual({ a: 9 });
    // A value that replaces a subtree is dropped if anything under it is newer.
    expect(lateLeavesDropped({ b: 1 }, times, 250)).toEqual({});
    expect(lateLeavesDropped({ b: null }, times, 400)).toEqual({ b: null });
    // Everything late: an empty patch.
    expect(lateLeavesDropped({ a: 1, b: { d: 1 } }, times, 50)).toEqual({});
  });

  it("returns the same patch when nothing is late", () => {
    const patch = { a: 1, b: { c: 2 } };
    expect(lateLeavesDropped(patch, { a: 1 }, 5)).toBe(patch);
  });
});
