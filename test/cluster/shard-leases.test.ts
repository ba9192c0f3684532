import { describe, expect, it } from "vitest";
import { LeaseLost } from "../../cluster/leases/errors.ts";
import { MemoryLeaseStore } from "../../cluster/leases/memory.ts";
import { type LeaseEvent, ShardLeases } from "../../cluster/leases/shard-leases.ts";
import type { ShardOwnership } from "../../runtime/core/ownership.ts";
import { FakeClock, settle } from "./fake-clock.ts";
import { FaultyLeaseStore } from "./faulty-lease-store.ts";

const TTL = 3000;
const RENEW = 1000;
const RETRY = 500;
const MARGIN = 300;

function setup() {
  const clock = new FakeClock();
  const store = new MemoryLeaseStore(clock);
  const errors: unknown[] = [];
  const node = (nodeId: string) => {
    const link = new FaultyLeaseStore(store);
    const leases = new ShardLeases({
      store: link,
      nodeId,
      ttlMs: TTL,
      renewEveryMs: RENEW,
      retryEveryMs: RETRY,
      safetyMarginMs: MARGIN,
      clock,
      onError: (e) => errors.push(e),
    });
    const events: LeaseEvent[] = [];
    leases.onChange((e) => events.push(e));
    return { leases, link, events };
  };
  return { clock, store, node, errors };
}

/** The error `writerFor` throws, or undefined when it returns. */
function refusal(leases: ShardLeases, shard: number): LeaseLost | undefined {
  try {
    leases.writerFor(shard);
    return undefined;
  } catch (error) {
    if (error instanceof LeaseLost) return error;
    throw error;
  }
}

describe("shard leases", () => {
  it("acquires the wanted shards, in one store call, and writes them with their lease epoch", async () => {
    const { node, store } = setup();
    const a = node("a");
    expect(refusal(a.leases, 1)?.reason).toBe("not-owned");
    a.leases.want([1, 2, 3]);
    await settle();
    expect(a.leases.ownedShards()).toEqual([1, 2, 3]);
    expect(a.link.calls.acquire).toBe(1);
    const epoch = (await store.holder(2))!.epoch;
    expect(a.leases.writerFor(2)).toEqual({ node: "a", epoch });
    expect(a.events).toContainEqual({ type: "gained", shard: 2, epoch });
    expect(refusal(a.leases, 4)?.reason).toBe("not-owned");
  });

  it("keeps its shards by renewing them every renewEveryMs, all in one store call, with the same epochs", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    a.leases.want([1, 2, 3]);
    await settle();
    const epochs = [1, 2, 3].map((shard) => a.leases.writerFor(shard).epoch);
    await clock.advance(TTL * 5);
    expect([1, 2, 3].map((shard) => a.leases.writerFor(shard))).toEqual(
      epochs.map((epoch) => ({ node: "a", epoch })),
    );
    expect(a.link.calls.renew).toBe((TTL * 5) / RENEW);
    for (const shard of [1, 2, 3]) {
      expect((await store.holder(shard))!.expiresInMs).toBeGreaterThan(TTL - RENEW - 1);
    }
    expect(a.events.filter((e) => e.type === "lost")).toEqual([]);
  });

  it("refuses to write after a pause longer than the TTL, without asking the store", async () => {
    const { node, clock } = setup();
    const a = node("a");
    a.leases.want([1]);
    await settle();
    const calls = a.link.totalCalls;
    clock.jump(TTL + 1); // SIGSTOP: no timer ran, no renewal was sent
    expect(refusal(a.leases, 1)?.reason).toBe("expired");
    expect(a.leases.ownedShards()).toEqual([]);
    expect(a.link.totalCalls).toBe(calls);
    await Promise.resolve();
    expect(a.events.at(-1)).toMatchObject({ type: "lost", shard: 1, reason: "expired" });
  });

  it("stops owning a shard at its local deadline (sent + ttl − margin) when renewals fail, never later", async () => {
    const { node, clock } = setup();
    const a = node("a");
    a.leases.want([1]);
    await settle();
    const sentAt = clock.now();
    a.link.down = true; // every renewal fails from now on
    await clock.advance(TTL - MARGIN - 1);
    expect(a.leases.writerFor(1).node).toBe("a");
    await clock.advance(1);
    expect(clock.now()).toBe(sentAt + TTL - MARGIN);
    expect(refusal(a.leases, 1)?.reason).toBe("expired");
    expect(a.events.at(-1)).toMatchObject({ type: "lost", shard: 1, reason: "expired" });
  });

  it("re-acquires its shards with a new epoch once the store is reachable again", async () => {
    const { node, clock } = setup();
    const a = node("a");
    a.leases.want([1]);
    await settle();
    const before = a.leases.writerFor(1).epoch;
    a.link.down = true;
    await clock.advance(TTL * 2);
    expect(a.leases.ownedShards()).toEqual([]);
    a.link.down = false;
    await clock.advance(RETRY);
    expect(a.leases.writerFor(1).epoch).toBeGreaterThan(before);
  });

  it("hands a shard over on release: the waiting node gets it with a greater epoch", async () => {
    const { node, clock } = setup();
    const a = node("a");
    const b = node("b");
    a.leases.want([1]);
    await settle();
    b.leases.want([1]);
    await clock.advance(RETRY * 3);
    expect(b.leases.ownedShards()).toEqual([]); // still held by a
    const epochA = a.leases.writerFor(1).epoch;
    await a.leases.release([1]);
    expect(refusal(a.leases, 1)?.reason).toBe("released");
    expect(a.events.at(-1)).toMatchObject({ type: "lost", shard: 1, reason: "released" });
    b.leases.want([1]); // e.g. on a's announcement; otherwise within retryEveryMs
    await settle();
    expect(b.leases.writerFor(1).epoch).toBeGreaterThan(epochA);
    await clock.advance(TTL * 2);
    expect(a.leases.ownedShards()).toEqual([]); // a no longer wants it
  });

  it("takes over a shard whose holder stopped renewing, never while the holder may still write", async () => {
    const { node, clock } = setup();
    const a = node("a");
    const b = node("b");
    a.leases.want([1]);
    await settle();
    b.leases.want([1]);
    a.link.down = true; // a is cut off from the store but keeps running
    let aLost = -1;
    let bGained = -1;
    for (let t = 0; t < TTL * 2; t += 10) {
      await clock.advance(10);
      const aOwns = refusal(a.leases, 1) === undefined;
      const bOwns = refusal(b.leases, 1) === undefined;
      expect(aOwns && bOwns, `both own shard 1 at +${t + 10} ms`).toBe(false);
      if (!aOwns && aLost < 0) aLost = t + 10;
      if (bOwns && bGained < 0) bGained = t + 10;
    }
    expect(aLost).toBe(TTL - MARGIN);
    expect(bGained).toBeGreaterThanOrEqual(TTL); // only once the lease expired in the store
    expect(bGained).toBeLessThanOrEqual(TTL + RETRY);
  });

  it("reports a shard taken by another node after the store lost its lease", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    a.leases.want([1]);
    await settle();
    store.flush(); // the store restarted without its data
    const b = node("b");
    b.leases.want([1]);
    await settle();
    const epochB = b.leases.writerFor(1).epoch;
    await clock.advance(RENEW);
    expect(refusal(a.leases, 1)?.reason).toBe("taken");
    expect(a.events.at(-1)).toMatchObject({
      type: "lost",
      shard: 1,
      reason: "taken",
      by: { node: "b", epoch: epochB },
    });
  });

  it("reports a renewal the store rejected when nobody else holds the shard, then re-acquires it", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    a.leases.want([1]);
    await settle();
    const before = a.leases.writerFor(1).epoch;
    store.flush();
    await clock.advance(RENEW);
    expect(a.events.find((e) => e.type === "lost")).toMatchObject({
      reason: "renew-rejected",
      epoch: before,
    });
    await clock.advance(RETRY);
    expect(a.leases.writerFor(1).epoch).toBeGreaterThan(before);
    expect(a.events.at(-1)).toMatchObject({ type: "gained", shard: 1 });
  });

  it("loses only the shard whose renewal the store rejected; the others of the same call stay owned", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    a.leases.want([1, 2, 3]);
    await settle();
    const before = a.leases.writerFor(2).epoch;
    await store.release(2, "a", before); // the store no longer has shard 2's lease
    await clock.advance(RENEW);
    expect(refusal(a.leases, 2)?.reason).toBe("renew-rejected");
    expect(a.leases.ownedShards()).toEqual([1, 3]);
    expect(a.events.filter((e) => e.type === "lost")).toEqual([
      { type: "lost", shard: 2, epoch: before, reason: "renew-rejected" },
    ]);
    await clock.advance(RETRY);
    expect(a.leases.ownedShards()).toEqual([1, 2, 3]);
    expect(a.leases.writerFor(2).epoch).toBeGreaterThan(before);
  });

  it("keeps renewing a shard that is no longer wanted until it is released", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    a.leases.want([1, 2]);
    await settle();
    a.leases.want([2]);
    await clock.advance(TTL * 2);
    expect(a.leases.ownedShards()).toEqual([1, 2]);
    await a.leases.release([1]);
    expect(a.leases.ownedShards()).toEqual([2]);
    expect(await store.holder(1)).toBeUndefined();
    await clock.advance(TTL);
    expect(a.leases.ownedShards()).toEqual([2]);
  });

  it("gives back a grant that arrives after its deadline, and one no longer wanted", async () => {
    const { node, clock, store } = setup();
    const a = node("a");
    let deliver = () => {};
    a.link.delay = new Promise<void>((resolve) => (deliver = resolve));
    a.leases.want([1]);
    await settle();
    clock.jump(TTL); // the reply is stuck in a slow network for longer than the lease
    a.link.delay = undefined;
    deliver();
    await settle();
    expect(a.leases.ownedShards()).toEqual([]);
    expect(await store.holder(1)).toBeUndefined();
    expect(a.link.calls.release).toBe(1);

    a.link.delay = new Promise<void>((resolve) => (deliver = resolve));
    a.leases.want([2]);
    await settle();
    await a.leases.release([2]); // no longer wanted while the acquire is in flight
    a.link.delay = undefined;
    deliver();
    await settle();
    expect(a.leases.ownedShards()).toEqual([]);
    expect(await store.holder(2)).toBeUndefined();
    await clock.advance(RETRY);
    expect(a.events.filter((e) => e.type === "gained")).toEqual([]);
  });

  it("releases everything on close, or leaves the leases to expire when told not to", async () => {
    const { node, store } = setup();
    const a = node("a");
    a.leases.want([1, 2]);
    await settle();
    await a.leases.close();
    expect(await store.holders()).toEqual(new Map());
    expect(refusal(a.leases, 1)?.reason).toBe("closed");
    expect(() => a.leases.want([1])).toThrow();

    const b = node("b");
    b.leases.want([3]);
    await settle();
    await b.leases.close({ release: false });
    expect(b.leases.ownedShards()).toEqual([]);
    expect((await store.holder(3))?.node).toBe("b");
    expect(b.events.at(-1)).toMatchObject({ type: "lost", shard: 3, reason: "closed" });
  });

  it("delivers events in order, after the call that caused them, and survives a throwing listener", async () => {
    const { node, errors } = setup();
    const a = node("a");
    a.leases.onChange(() => {
      throw new Error("listener failed");
    });
    a.leases.want([1]);
    await settle();
    const seen: string[] = [];
    a.leases.onChange((e) => seen.push(`${e.type} ${e.shard}`));
    const releasing = a.leases.release([1]);
    a.leases.want([1]);
    expect(seen).toEqual([]); // not inside the calls
    await releasing;
    await settle();
    expect(seen).toEqual(["lost 1", "gained 1"]);
    expect(errors.filter((e) => e instanceof Error && e.message === "listener failed").length).toBe(3);
  });

  it("can be handed to the engine as its ShardOwnership", () => {
    const ownership: ShardOwnership = new ShardLeases({ store: new MemoryLeaseStore(), nodeId: "a" });
    expect(ownership.ownedShards()).toEqual([]);
    expect(() => ownership.writerFor(0)).toThrow(LeaseLost);
  });

  it("refuses inconsistent timings and invalid shards", () => {
    const store = new MemoryLeaseStore();
    expect(
      () => new ShardLeases({ store, nodeId: "a", ttlMs: 1000, renewEveryMs: 900, safetyMarginMs: 100 }),
    ).toThrow(RangeError);
    expect(() => new ShardLeases({ store, nodeId: "" })).toThrow(RangeError);
    expect(() => new ShardLeases({ store, nodeId: "a" }).want([-1])).toThrow(RangeError);
  });
});
