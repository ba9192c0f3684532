import { QuotaExceeded, Twin, z } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, describe, expect, it } from "vitest";

type State = { items: string[]; greeted: boolean };
type Event = { type: "added"; item: string } | { type: "greeted" };

class Box extends Twin<State, Event> {
  static readonly type: string = "box";
  static readonly commands = { add: z.object({ item: z.string() }) };
  static readonly desired = z.object({ open: z.boolean() }).partial();
  initialState(): State {
    return { items: [], greeted: false };
  }
  apply(state: State, event: Event): State {
    return event.type === "added"
      ? { ...state, items: [...state.items, event.item] }
      : { ...state, greeted: true };
  }
  add({ item }: { item: string }) {
    this.emit({ type: "added", item });
  }
}

/** Adds an item to another box (a twin-to-twin call), then records it here. */
class Packer extends Box {
  static override readonly type: string = "packer";
  static override readonly commands = {
    add: z.object({ item: z.string() }),
    pack: z.object({ into: z.string() }),
  };
  async pack({ into }: { into: string }) {
    await this.call({ type: "box", id: into }, "add", { item: this.id });
    this.emit({ type: "added", item: `packed into ${into}` });
  }
}

/** Writes an event when it is first activated: a new twin is created by its activation. */
class Greeter extends Box {
  static override readonly type: string = "greeter";
  override onActivate(): void {
    if (!this.state.greeted) this.emit({ type: "greeted" });
  }
}

const key = (id: string, maxTwins: number) => ({ principal: `service-key:${id}`, maxTwins });
const box = (id: string) => ({ type: "box", id });

describe("the twin-creation quota in the engine", () => {
  let test: TestNode;
  afterEach(async () => {
    await test.stop();
  });

  it("counts only the writes that create a twin against the caller's maxTwins, across a restart", async () => {
    test = await TestNode.start({ twins: [Box] });
    const k1 = key("k1", 2);
    await test.twins.invoke(box("b1"), "add", { item: "a" }, k1);
    await test.twins.updateDesired(box("b2"), { open: true }, k1);
    const refused = await test.twins.invoke(box("b3"), "add", { item: "c" }, k1).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QuotaExceeded);
    expect((refused as QuotaExceeded).details).toMatchObject({ quota: "maxTwins", limit: 2, used: 2 });
    expect(await test.twin(Box, "b3").events()).toEqual([]);
    // Writes to twins that exist pass, and another key has its own count.
    expect((await test.twins.invoke(box("b1"), "add", { item: "b" }, k1)).version).toBe(2);
    expect((await test.twins.updateDesired(box("b2"), { open: false }, k1)).version).toBe(2);
    await test.twins.invoke(box("b3"), "add", { item: "c" }, key("k2", 1));
    await test.restart();
    await expect(test.twins.invoke(box("b4"), "add", { item: "d" }, k1)).rejects.toBeInstanceOf(
      QuotaExceeded,
    );
    expect((await test.twins.invoke(box("b3"), "add", { item: "e" }, k1)).version).toBe(2);
  });

  it("fails every turn queued behind a refused creation with it, and the twin stays creatable by others", async () => {
    test = await TestNode.start({ twins: [Box] });
    await test.twins.invoke(box("first"), "add", { item: "a" }, key("full", 1));
    const results = await Promise.allSettled(
      ["x", "y", "z"].map((item) => test.twins.invoke(box("late"), "add", { item }, key("full", 1))),
    );
    for (const result of results) {
      expect(result.status).toBe("rejected");
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(QuotaExceeded);
    }
    expect(await test.twin(Box, "late").events()).toEqual([]);
    const created = await test.twins.invoke(box("late"), "add", { item: "w" }, { principal: "anonymous" });
    expect(created.version).toBe(1);
  });

  it("acts for the caller in twin-to-twin calls: the called twin's events carry its principal, and a twin it creates counts against its quota", async () => {
    test = await TestNode.start({ twins: [Box, Packer] });
    const k = key("packer-key", 2);
    await test.twins.invoke({ type: "packer", id: "p1" }, "pack", { into: "crate-1" }, k);
    expect((await test.twin(Box, "crate-1").events()).map((e) => [e.type, e.principal])).toEqual([
      ["added", "service-key:packer-key"],
    ]);
    expect((await test.twin(Packer, "p1").events()).map((e) => e.principal)).toEqual([
      "service-key:packer-key",
    ]);
    // p1 and crate-1 used the key's two creations: packing into a new box through p1 is refused,
    // and the refusal reaches the caller through the call; an existing box still takes items.
    const refused = await test.twins
      .invoke({ type: "packer", id: "p1" }, "pack", { into: "crate-2" }, k)
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QuotaExceeded);
    expect(await test.twin(Box, "crate-2").events()).toEqual([]);
    const again = await test.twins.invoke({ type: "packer", id: "p1" }, "pack", { into: "crate-1" }, k);
    expect(again.version).toBe(2);
    expect((await test.twin(Box, "crate-1").events()).length).toBe(2);
  });

  it("counts the events onActivate writes into a new twin against the call that woke it", async () => {
    test = await TestNode.start({ twins: [Greeter] });
    const k = key("greeter-key", 1);
    await test.twins.updateDesired({ type: "greeter", id: "g1" }, { open: true }, k);
    expect((await test.twin(Greeter, "g1").events()).map((e) => [e.type, e.principal])).toEqual([
      ["greeted", "service-key:greeter-key"],
      ["$desired", "service-key:greeter-key"],
    ]);
    await expect(
      test.twins.updateDesired({ type: "greeter", id: "g2" }, { open: true }, k),
    ).rejects.toBeInstanceOf(QuotaExceeded);
    expect(await test.twin(Greeter, "g2").events()).toEqual([]);
  });
});
