import { CallCycle, HandlerFailed, ResourceExhausted, Unavailable, VersionConflict } from "doppel";
import { MemoryEventStore } from "doppel/node";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Caller, Counter } from "./fixtures.ts";

describe("engine: turns", () => {
  let test: TestNode;
  beforeEach(async () => {
    Counter.reset();
    test = await TestNode.start({ twins: [Counter, Caller] });
  });
  afterEach(async () => {
    await test.stop();
  });

  it("never overlaps two turns of one twin under concurrent senders", async () => {
    const c = test.twin(Counter, "c1");
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => c.invoke("add", { by: 1, tag: `s${i % 4}-${i}` })),
    );
    expect(Counter.maxConcurrent).toBe(1);
    expect((await c.get()).state["count"]).toBe(200);
    // Every turn saw the effects of all earlier turns: the counts it returned are exactly 1..200.
    expect(results.map((r) => r.count).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
  });

  it("runs turns of different twins concurrently", async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => test.twin(Counter, `c${i}`).invoke("add", { by: 1, tag: "" })),
    );
    expect(Counter.maxConcurrent).toBeGreaterThan(1);
  });

  it("keeps each sender's order", async () => {
    const c = test.twin(Counter, "ordered");
    const senders = ["a", "b", "c"];
    await Promise.all(
      senders.map(async (sender) => {
        const pending = [];
        for (let i = 0; i < 30; i++) pending.push(c.invoke("add", { by: 1, tag: `${sender}${i}` }));
        await Promise.all(pending);
      }),
    );
    const events = await c.events();
    for (const sender of senders) {
      const seen = events.map((e) => String(e.data["tag"])).filter((t) => t.startsWith(sender));
      expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => `${sender}${i}`));
    }
  });

  it("fails only the message whose handler throws and keeps the state unchanged", async () => {
    const c = test.twin(Counter, "c1");
    await c.invoke("add", { by: 2, tag: "x" });
    const before = await c.get();
    await expect(c.invoke("fail", { after: 3 })).rejects.toThrow(HandlerFailed);
    await expect(c.invoke("fail", { after: 3 })).rejects.toThrow(
      "counter/c1.fail failed: deliberate failure",
    );
    const after = await c.get();
    expect(after.version).toBe(before.version);
    expect(after.state).toEqual(before.state);
    expect(await c.invoke("add", { by: 1, tag: "y" })).toEqual({ count: 3 });
    expect((await c.events()).some((e) => e.data["tag"] === "doomed")).toBe(false);
  });

  it("refuses a stale expected version with a version conflict", async () => {
    const c = test.twin(Counter, "c1");
    await c.invoke("add", { by: 1, tag: "" });
    await expect(test.twins.invoke(c.ref, "add", { by: 1 }, { expectedVersion: 0 })).rejects.toThrow(
      VersionConflict,
    );
    await expect(test.twins.invoke(c.ref, "add", { by: 1 }, { expectedVersion: 1 })).resolves.toMatchObject({
      version: 2,
    });
  });

  it("answers with the version after the command", async () => {
    const c = test.twin(Counter, "c1");
    const first = await test.twins.invoke(c.ref, "add", { by: 1 });
    const read = await test.twins.invoke(c.ref, "read", {});
    expect(first.version).toBe(1);
    expect(read).toEqual({ result: { count: 1 }, version: 1 });
  });
});

describe("engine: activation and passivation", () => {
  beforeEach(() => Counter.reset());

  it("restores identical state after passivation", async () => {
    const test = await TestNode.start({ twins: [Counter] });
    const c = test.twin(Counter, "c1");
    for (let i = 0; i < 12; i++) await c.invoke("add", { by: i, tag: `t${i}` });
    const before = await c.get();
    await test.passivateAll();
    expect(test.resident).toBe(0);
    expect(Counter.passivations).toBe(1);
    expect(await c.invoke("read", {})).toEqual({ count: before.state["count"] });
    expect(Counter.activations).toBe(2);
    expect((await c.get()).state).toEqual(before.state);
    await test.stop();
  });

  it("rebuilds the same state from snapshot + replay as from a full replay", async () => {
    const store = new MemoryEventStore();
    const first = await TestNode.start({ twins: [Counter], store });
    const c = first.twin(Counter, "c1");
    for (let i = 0; i < 23; i++) await c.invoke("add", { by: i * 3 - 7, tag: `t${i}` });
    await first.idle();
    // snapshotEvery is 5: the latest snapshot is at 20, three events follow it.
    const loaded = await store.loadTwin(c.ref);
    expect(loaded.snapshot?.seq).toBe(20);
    expect(loaded.events.map((e) => e.seq)).toEqual([21, 22, 23]);
    const twin = new Counter();
    let full = twin.initialState();
    for (const event of await store.readEvents(c.ref, 0)) full = twin.apply(full, event.data as never);
    // A second node (the first one abandoned, as after a crash) activates from snapshot + replay.
    const second = await TestNode.start({ twins: [Counter], store });
    expect(await second.twin(Counter, "c1").invoke("read", {})).toEqual({ count: full.count });
    expect(second.node.engine.resident("counter/c1")?.committedData.state).toEqual(full);
    await second.stop();
    await first.stop();
  });

  it("passivates twins idle longer than the idle timeout", async () => {
    const test = await TestNode.start({
      twins: [Counter],
      config: { limits: { idleTimeout: "1m", idleSweep: "10s" } },
    });
    await test.twin(Counter, "a").invoke("add", { by: 1, tag: "" });
    await test.advance("30s");
    await test.twin(Counter, "b").invoke("add", { by: 1, tag: "" });
    expect(test.resident).toBe(2);
    await test.advance("40s");
    expect(test.resident).toBe(1);
    await test.advance("40s");
    expect(test.resident).toBe(0);
    await test.stop();
  });

  it("passivates the least recently used twins beyond the resident cap", async () => {
    const test = await TestNode.start({ twins: [Counter], config: { limits: { maxResident: 3 } } });
    for (const id of ["a", "b", "c"]) await test.twin(Counter, id).invoke("add", { by: 1, tag: "" });
    await test.twin(Counter, "a").invoke("read", {});
    await test.twin(Counter, "d").invoke("add", { by: 1, tag: "" });
    await test.idle();
    const resident = [...test.node.engine.catalog.activations()].map((a) => a.id).sort();
    expect(resident).toEqual(["a", "c", "d"]);
    await test.stop();
  });

  it("keeps its twins in recency order: each message moves its twin to the newest end", async () => {
    const test = await TestNode.start({ twins: [Counter], config: { limits: { maxResident: 3 } } });
    for (const id of ["a", "b", "c"]) await test.twin(Counter, id).invoke("add", { by: 1, tag: "" });
    await test.twin(Counter, "b").invoke("read", {});
    await test.twin(Counter, "a").invoke("read", {});
    await test.twin(Counter, "a").invoke("read", {});
    expect([...test.node.engine.catalog.activations()].map((a) => a.id)).toEqual(["c", "b", "a"]);
    await test.twin(Counter, "d").invoke("add", { by: 1, tag: "" });
    await test.idle();
    expect([...test.node.engine.catalog.activations()].map((a) => a.id)).toEqual(["b", "a", "d"]);
    await test.stop();
  });

  it("refuses messages beyond the mailbox bound with ResourceExhausted", async () => {
    const test = await TestNode.start({ twins: [Counter], config: { limits: { mailboxSize: 5 } } });
    const c = test.twin(Counter, "c1");
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => c.invoke("add", { by: 1, tag: "" })),
    );
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ResourceExhausted);
    const accepted = results.length - refused.length;
    expect((await c.get()).state["count"]).toBe(accepted);
    await test.stop();
  });
});

describe("engine: store failures", () => {
  it("answers Unavailable when the store fails, keeps state, and recovers by itself", async () => {
    const store = new MemoryEventStore();
    const test = await TestNode.start({ twins: [Counter], store });
    const c = test.twin(Counter, "c1");
    await c.invoke("add", { by: 1, tag: "" });
    store.failNext(1);
    await expect(c.invoke("add", { by: 5, tag: "" })).rejects.toThrow(Unavailable);
    expect(await c.invoke("read", {})).toEqual({ count: 1 });
    await c.invoke("add", { by: 1, tag: "" });
    expect((await c.get()).state["count"]).toBe(2);
    expect((await c.events()).map((e) => e.seq)).toEqual([1, 2]);
    await test.stop();
  });

  it("fails activation with Unavailable when the store is down, then activates once it is back", async () => {
    const store = new MemoryEventStore();
    const test = await TestNode.start({ twins: [Counter], store });
    store.failNext(1);
    await expect(test.twin(Counter, "c1").invoke("read", {})).rejects.toThrow(Unavailable);
    expect(await test.twin(Counter, "c1").invoke("read", {})).toEqual({ count: 0 });
    await test.stop();
  });
});

describe("engine: calls between twins", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Caller] });
  });
  afterEach(async () => {
    await test.stop();
  });

  it("lets a twin call another and use its answer", async () => {
    const result = await test.twin(Caller, "a").invoke("relay", { path: ["b", "c"] });
    expect(result).toEqual({ via: "a", answer: { via: "b", answer: { reached: "c" } } });
  });

  it("fails a call cycle A → B → A fast with a clear error instead of hanging", async () => {
    const attempt = test.twin(Caller, "a").invoke("relay", { path: ["b", "a"] });
    await expect(attempt).rejects.toThrow(CallCycle);
    await expect(test.twin(Caller, "a").invoke("relay", { path: ["b", "a"] })).rejects.toThrow(
      "call cycle: caller/a → caller/b → caller/a",
    );
    // No turn of the failed chain was kept, and both twins still serve.
    expect(await test.twin(Caller, "a").invoke("echo", { text: "hi" })).toEqual({ text: "hi" });
    await expect(test.twins.get({ type: "caller", id: "a" })).rejects.toThrow("not found");
  });

  it("fails a self call as a cycle", async () => {
    await expect(test.twin(Caller, "a").invoke("relay", { path: ["a"] })).rejects.toThrow(CallCycle);
  });
});
