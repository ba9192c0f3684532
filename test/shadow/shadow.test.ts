import { describe, expect, it } from "vitest";
import { applyDesired, applyReported, clearMet, computeDelta } from "../../runtime/shadow/shadow.ts";

describe("shadow", () => {
  it("computes the delta as desired leaves that differ from reported", () => {
    expect(computeDelta({ a: 1, b: 2 }, { a: 1, b: 3 })).toEqual({ b: 2 });
    expect(computeDelta({ led: { color: "red", on: true } }, { led: { color: "red", on: false } })).toEqual({
      led: { on: true },
    });
    expect(computeDelta({ list: [1, 2] }, { list: [1, 2] })).toEqual({});
    expect(computeDelta({ list: [1, 2] }, { list: [2, 1] })).toEqual({ list: [1, 2] });
    expect(computeDelta({ a: { b: 1 } }, {})).toEqual({ a: { b: 1 } });
    expect(computeDelta({}, { a: 1 })).toEqual({});
  });

  it("clears desired leaves once the device reports them", () => {
    const after = applyReported(
      { reported: {}, desired: { a: 1, b: { c: 2, d: 3 } } },
      { a: 1, b: { c: 2 } },
    );
    expect(after.desired).toEqual({ b: { d: 3 } });
    expect(after.reported).toEqual({ a: 1, b: { c: 2 } });
  });

  it("clears a desired wish the device already meets when it is set", () => {
    const after = applyDesired(
      { reported: { mode: "eco", level: 3 }, desired: {} },
      { mode: "eco", level: 4 },
    );
    expect(after.desired).toEqual({ level: 4 });
  });

  it("merges patches with null deleting keys", () => {
    const after = applyReported(
      { reported: { a: 1, b: { c: 1, d: 2 } }, desired: {} },
      { a: null, b: { d: null, e: 3 } },
    );
    expect(after.reported).toEqual({ b: { c: 1, e: 3 } });
    const desired = applyDesired({ reported: {}, desired: { x: 1, y: 2 } }, { x: null });
    expect(desired.desired).toEqual({ y: 2 });
  });

  it("keeps desired untouched (same object) when nothing is met", () => {
    const desired = { a: 1 };
    expect(clearMet(desired, { a: 2 })).toBe(desired);
  });

  it("treats a desired object replaced by a reported scalar as unmet", () => {
    expect(computeDelta({ a: { b: 1 } }, { a: 5 })).toEqual({ a: { b: 1 } });
    expect(clearMet({ a: { b: 1 } }, { a: 5 })).toEqual({ a: { b: 1 } });
  });
});

describe("merge patch", () => {
  it("keeps a __proto__ key from JSON as plain data", async () => {
    const { mergePatch } = await import("../../runtime/core/json.ts");
    const patch = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const out = mergePatch({}, patch);
    expect(Object.keys(out)).toEqual(["__proto__", "a"]);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });
});
