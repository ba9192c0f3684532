import { DoppelNode, type EventStore, MemoryEventStore } from "doppel/node";
import { afterEach, describe, expect, it } from "vitest";
import type { ShardOwnership } from "../../runtime/core/ownership.ts";
import type { TwinCommit } from "../../runtime/core/records.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { notOwner } from "../../runtime/routing/protocol.ts";
import { Counter } from "./fixtures.ts";

/** An ownership that can be taken away (a lease lost), at a fixed epoch while held. */
function lease(node: string, epoch: number): ShardOwnership & { held: boolean } {
  return {
    held: true,
    writerFor(shard) {
      if (!this.held) throw notOwner(shard, node);
      return { node, epoch };
    },
    ownedShards() {
      return this.held ? "all" : [];
    },
  };
}

/** `store`, with the next commit of twin `id` held until `release()` once `arm()` was called. */
function holdingStore(store: MemoryEventStore, id: string) {
  let armed = false;
  let release: () => void = () => {};
  let holding: () => void = () => {};
  const held = new Promise<void>((resolve) => (holding = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const proxy = new Proxy(store, {
    get(target, property) {
      if (property === "commit") {
        return async (commits: readonly TwinCommit[], ...rest: unknown[]) => {
          if (armed && commits.some((c) => c.ref.id === id)) {
            armed = false;
            holding();
            await gate;
          }
          return target.commit(commits, ...(rest as []));
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as EventStore;
  return { store: proxy, arm: () => (armed = true), held, release: () => release() };
}

describe("engine: a write held up past the writer's lease", () => {
  const nodes: DoppelNode[] = [];
  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.stop();
  });

  async function node(id: string, store: EventStore, ownership: ShardOwnership): Promise<DoppelNode> {
    const started = await DoppelNode.start(
      { nodeId: id, store: { kind: "memory" }, grpc: { listen: false }, shards: 4 },
      { twins: [Counter], store, ownership, logger: silentLogger() },
    );
    nodes.push(started);
    return started;
  }

  it("is refused as 'not owner' when another writer took over, and the twin is not quarantined", async () => {
    const shared = new MemoryEventStore();
    const ref = { type: "counter", id: "held" };
    const leaseA = lease("a", 1);
    const holding = holdingStore(shared, ref.id);
    const a = await node("a", holding.store, leaseA);
    await a.twins.invoke(ref, "add", { by: 1, tag: "a1" });

    // A's next write passes its fence check, then waits (a pause, a slow store)...
    holding.arm();
    const late = a.twins.invoke(ref, "add", { by: 1, tag: "a2" });
    await holding.held;
    // ... while its lease is lost and B, the new owner, appends.
    leaseA.held = false;
    const b = await node("b", shared, lease("b", 2));
    await b.twins.invoke(ref, "add", { by: 10, tag: "b1" });
    holding.release();

    await expect(late).rejects.toMatchObject({ code: "UNAVAILABLE", details: { retry: "not-owner" } });
    expect((await shared.loadTwin(ref)).quarantine).toBeUndefined();
    const log = await shared.readHistory(ref, { limit: 10 });
    expect(log.map((e) => [e.seq, e.data["tag"], e.writer.node])).toEqual([
      [1, "a1", "a"],
      [2, "b1", "b"],
    ]);
    expect((await b.twins.invoke(ref, "add", { by: 100, tag: "b2" })).version).toBe(3);
  });

  it("is refused by the store when the writer still believes it holds the lease but a newer epoch wrote (a paused process), and nothing forks", async () => {
    const shared = new MemoryEventStore();
    const ref = { type: "counter", id: "paused" };
    const holding = holdingStore(shared, ref.id);
    // A's lease object keeps saying "held": the process has not noticed it lost the lease, so
    // every check A makes passes. Only the store can refuse its late write.
    const a = await node("a", holding.store, lease("a", 1));
    await a.twins.invoke(ref, "add", { by: 1, tag: "a1" });
    holding.arm();
    const late = a.twins.invoke(ref, "add", { by: 1, tag: "a2" });
    await holding.held;
    const b = await node("b", shared, lease("b", 2));
    await b.twins.invoke(ref, "add", { by: 10, tag: "b1" });
    holding.release();

    await expect(late).rejects.toMatchObject({
      code: "UNAVAILABLE",
      details: { retry: "not-owner", reason: "stale-epoch", epoch: 1, twinEpoch: 2 },
    });
    // A's next call reloads, sees the newer epoch, and is refused as not the owner: never a fork.
    await expect(a.twins.invoke(ref, "add", { by: 1, tag: "a3" })).rejects.toMatchObject({
      code: "UNAVAILABLE",
      details: { retry: "not-owner" },
    });
    expect((await shared.loadTwin(ref)).quarantine).toBeUndefined();
    const log = await shared.readHistory(ref, { limit: 10 });
    expect(log.map((e) => [e.seq, e.data["tag"], e.writer.epoch])).toEqual([
      [1, "a1", 1],
      [2, "b1", 2],
    ]);
  });

  it("reloads instead of quarantining when another writer at the same epoch appended first, and the next call sees its events", async () => {
    const shared = new MemoryEventStore();
    const ref = { type: "counter", id: "split" };
    const holding = holdingStore(shared, ref.id);
    const a = await node("a", holding.store, lease("a", 1));
    await a.twins.invoke(ref, "add", { by: 1, tag: "a1" });
    holding.arm();
    const late = a.twins.invoke(ref, "add", { by: 1, tag: "a2" });
    await holding.held;
    const b = await node("b", shared, lease("b", 1));
    await b.twins.invoke(ref, "add", { by: 10, tag: "b1" });
    holding.release();
    await expect(late).rejects.toMatchObject({ code: "UNAVAILABLE", details: { reason: "conflict" } });
    // The refused write left nothing; A reloads and continues after B's event.
    expect((await a.twins.invoke(ref, "add", { by: 100, tag: "a3" })).version).toBe(3);
    expect((await shared.loadTwin(ref)).quarantine).toBeUndefined();
    const log = await shared.readHistory(ref, { limit: 10 });
    expect(log.map((e) => e.data["tag"])).toEqual(["a1", "b1", "a3"]);
  });
});
