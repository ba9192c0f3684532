import { Twin, type TwinOptions, z } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, describe, expect, it } from "vitest";

type State = { items: string[] };
type Event = { type: "added"; item: string };

class Box extends Twin<State, Event, { level?: number; label?: string }> {
  static readonly type: string = "box";
  static readonly reported = z
    .object({ level: z.number(), label: z.string(), unit: z.string().default("mm") })
    .partial();
  static readonly commands = { add: z.object({ item: z.string() }) };
  initialState(): State {
    return { items: [] };
  }
  apply(state: State, event: Event): State {
    return { items: [...state.items, event.item] };
  }
  add({ item }: { item: string }) {
    this.emit({ type: "added", item });
  }
}

class LenientBox extends Box {
  static override readonly type: string = "lenient";
  static readonly options: TwinOptions = { unknownReportedKeys: "strip" };
}

const box = { type: "box", id: "b1" };

describe("bounded twins", () => {
  let test: TestNode;
  afterEach(async () => {
    await test.stop();
  });

  const start = (limits: Record<string, number> = {}) =>
    TestNode.start({ twins: [Box, LenientBox], config: { limits } }).then((t) => {
      test = t;
    });

  it("refuses a report that would grow reported over limits.maxReportedBytes, naming the limit; nothing is kept", async () => {
    await start({ maxReportedBytes: 1024 });
    await test.twins.report(box, { label: "x".repeat(500) });
    const before = await test.twins.get(box);
    await expect(test.twins.report(box, { label: "y".repeat(1200) })).rejects.toThrow(
      /box\/b1: reported would be \d+ bytes, over limits.maxReportedBytes \(1024\)/,
    );
    const after = await test.twins.get(box);
    expect(after.version).toBe(before.version);
    expect(after.reported).toEqual(before.reported);
  });

  it("measures reported exactly once many small reports add up to the limit: refuses the first report that would cross it", async () => {
    await start({ maxReportedBytes: 1024 });
    // Each report replaces the label: reported stays small although the reports' sizes add up
    // to far more than the limit (the kept upper bound is re-measured, never trusted past it).
    for (let i = 0; i < 40; i++) await test.twins.report(box, { label: `${i}`.padEnd(100, "x") });
    expect((await test.twins.get(box)).reported["label"]).toBe("39".padEnd(100, "x"));
    // Growing it for real: refused exactly when the JSON of reported would be over 1024 bytes.
    await test.twins.report(box, { label: "y".repeat(990) });
    const size = Buffer.byteLength(JSON.stringify((await test.twins.get(box)).reported));
    expect(size).toBeLessThanOrEqual(1024);
    await expect(test.twins.report(box, { label: "y".repeat(990 + 1025 - size) })).rejects.toThrow(
      /reported would be 1025 bytes, over limits.maxReportedBytes \(1024\)/,
    );
    await test.twins.report(box, { label: "y".repeat(990 + 1024 - size) });
  });

  it("refuses a desired patch over limits.maxDesiredBytes", async () => {
    await start({ maxDesiredBytes: 512 });
    await expect(test.twins.updateDesired(box, { label: "z".repeat(600) })).rejects.toThrow(
      /desired would be \d+ bytes, over limits.maxDesiredBytes \(512\)/,
    );
  });

  it("fails a command whose events would grow state over limits.maxStateBytes with FAILED_PRECONDITION", async () => {
    await start({ maxStateBytes: 1024 });
    for (let i = 0; i < 5; i++) await test.twins.invoke(box, "add", { item: "i".repeat(100) });
    const error = await test.twins.invoke(box, "add", { item: "i".repeat(900) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "FAILED_PRECONDITION" });
    expect(String(error)).toMatch(/state would be \d+ bytes, over limits.maxStateBytes \(1024\)/);
    expect(((await test.twins.get(box)).state as State).items).toHaveLength(5);
  });

  it("stores the schema's parse result (defaults applied), keeps deletions, refuses unknown keys by name", async () => {
    await start();
    await test.twins.report(box, { level: 3 });
    expect((await test.twins.get(box)).reported).toEqual({ level: 3, unit: "mm" });
    // An explicit deletion wins over the schema's default.
    await test.twins.report(box, { unit: null });
    expect((await test.twins.get(box)).reported).toEqual({ level: 3 });
    await expect(test.twins.report(box, { level: 4, colour: "red", extra: 1 })).rejects.toThrow(
      /unknown field\(s\) colour, extra/,
    );
    expect((await test.twins.get(box)).reported).toEqual({ level: 3 });
  });

  it("strips unknown keys when the type says so; a patch left empty writes nothing", async () => {
    await start();
    const ref = { type: "lenient", id: "l1" };
    await test.twins.report(ref, { level: 1, colour: "red" });
    const view = await test.twins.get(ref);
    expect(view.reported).toEqual({ level: 1, unit: "mm" });
    const events = await test.twins.history(ref, { limit: 100 });
    expect(events.map((e) => e.data["patch"])).toEqual([{ level: 1, unit: "mm" }]);
  });

  it("refuses limits below their minimum at configuration", async () => {
    await expect(
      TestNode.start({ twins: [Box], config: { limits: { maxReportedBytes: 10 } } }),
    ).rejects.toThrow(/maxReportedBytes/);
    test = await TestNode.start({ twins: [Box] });
  });
});
