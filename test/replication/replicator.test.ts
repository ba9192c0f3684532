import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../cluster/ring/shard.ts";
import { EDGE_OWNED_EPOCH } from "../../runtime/core/edge-owner.ts";
import type { TwinRef } from "../../runtime/core/ids.ts";
import type { EventRecord, TwinChange } from "../../runtime/core/records.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import {
  decodeBatch,
  encodeBatch,
  type ReplicatedBatch,
} from "../../runtime/replication/replicated-batch.ts";
import { Replicator } from "../../runtime/replication/replicator.ts";
import { Counter } from "../engine/fixtures.ts";
import { sameEvent } from "../support/replicated-events.ts";

const EDGE = "plant-a";
const ref: TwinRef = { type: "counter", id: "c1" };
/** The parts of an event that replication must carry unchanged (the writer is the replicator's). */

async function startNode(id: string, store: MemoryEventStore): Promise<DoppelNode> {
  return DoppelNode.start(
    { nodeId: id, store: { kind: "memory" }, grpc: { listen: false }, shards: 4 },
    { twins: [Counter], store, logger: silentLogger() },
  );
}

describe("replicator: applies an edge twin's batches idempotently by twin and seq", () => {
  const edgeStore = new MemoryEventStore();
  let edge: DoppelNode;
  /** The edge twin's log after six commands, and batches of it. */
  let log: EventRecord[];
  const batch = async (from: number, to: number): Promise<ReplicatedBatch> => {
    const events = log.filter((e) => e.seq >= from && e.seq <= to);
    // The view sent with the batch: the edge's head view stamped with `to` (the replicator stores the
    // view it is sent; these tests are about seqs and idempotence, not the view's content).
    const view = (await edgeStore.readView(ref))!;
    return { edge: EDGE, ref, events, view: { ...view, version: to } };
  };
  const replicator = (store: MemoryEventStore, changes: TwinChange[] = []) =>
    new Replicator(store, { shardOf: (r) => shardOf(r.type, r.id, 4), onApplied: (c) => changes.push(c) });

  beforeAll(async () => {
    edge = await startNode("edge", edgeStore);
    for (let i = 1; i <= 6; i++) await edge.twins.invoke(ref, "add", { by: i, tag: `t${i}` });
    log = await edgeStore.readEvents(ref, 0);
    expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });
  afterAll(async () => {
    await edge.stop();
  });

  it("applies batches in order, skips redelivered ones, and ends with the edge's log and view", async () => {
    const cloud = new MemoryEventStore();
    const changes: TwinChange[] = [];
    const r = replicator(cloud, changes);
    expect(await r.apply(await batch(1, 2))).toEqual({ kind: "applied", events: 2, head: 2 });
    expect(await r.apply(await batch(1, 2))).toEqual({ kind: "duplicate", head: 2 });
    // A batch overlapping the head writes only what is new.
    expect(await r.apply(await batch(2, 4))).toEqual({ kind: "applied", events: 2, head: 4 });
    expect(await r.apply(await batch(5, 6))).toEqual({ kind: "applied", events: 2, head: 6 });
    expect(await r.apply(await batch(3, 6))).toEqual({ kind: "duplicate", head: 6 });
    const copied = await cloud.readEvents(ref, 0);
    expect(copied.map(sameEvent)).toEqual(log.map(sameEvent));
    expect(
      copied.every((e) => e.writer.epoch === EDGE_OWNED_EPOCH && e.writer.node === `edge:${EDGE}/edge`),
    ).toBe(true);
    expect(await cloud.readView(ref)).toEqual(await edgeStore.readView(ref));
    expect(changes.flatMap((c) => c.events.map((e) => e.seq))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("refuses a batch beyond a gap without writing, and applies it once the gap is filled", async () => {
    const cloud = new MemoryEventStore();
    const r = replicator(cloud);
    expect(await r.apply(await batch(3, 6))).toEqual({ kind: "gap", head: 0, first: 3 });
    expect(await cloud.readView(ref)).toBeUndefined();
    expect(await r.apply(await batch(1, 2))).toMatchObject({ kind: "applied", head: 2 });
    expect(await r.apply(await batch(3, 6))).toMatchObject({ kind: "applied", head: 6 });
    expect((await cloud.readEvents(ref, 0)).map(sameEvent)).toEqual(log.map(sameEvent));
  });

  it("two replicators racing on the same batches write each event once", async () => {
    const cloud = new MemoryEventStore();
    const [a, b] = [replicator(cloud), replicator(cloud)];
    const batches = [await batch(1, 2), await batch(3, 4), await batch(5, 6)];
    await Promise.all([
      (async () => {
        for (const x of batches) await a.apply(x);
      })(),
      (async () => {
        for (const x of batches) await b.apply(x);
      })(),
    ]);
    expect((await cloud.readEvents(ref, 0)).map(sameEvent)).toEqual(log.map(sameEvent));
  });

  it("never merges an edge's log into a twin the cloud wrote, nor another edge's", async () => {
    const cloudStore = new MemoryEventStore();
    const cloudNode = await startNode("cloud", cloudStore);
    try {
      await cloudNode.twins.invoke(ref, "add", { by: 100, tag: "cloud" });
      const r = replicator(cloudStore);
      expect(await r.apply(await batch(1, 2))).toMatchObject({ kind: "conflict" });
      expect(await r.apply(await batch(2, 3))).toMatchObject({ kind: "conflict" });
      expect((await cloudStore.readEvents(ref, 0)).map((e) => e.data)).toEqual([
        { type: "added", by: 100, tag: "cloud" },
      ]);
    } finally {
      await cloudNode.stop();
    }
    const other = new MemoryEventStore();
    await replicator(other).apply({ ...(await batch(1, 2)), edge: "plant-b" });
    expect(await replicator(other).apply(await batch(3, 4))).toEqual({
      kind: "conflict",
      reason: "counter/c1 is owned by edge plant-b, not plant-a",
    });
  });

  it("a cloud node serves a replicated twin's reads and refuses its writes, naming the edge", async () => {
    const cloudStore = new MemoryEventStore();
    await replicator(cloudStore).apply(await batch(1, 6));
    const cloud = await startNode("cloud", cloudStore);
    try {
      expect((await cloud.twins.get(ref)).state).toEqual((await edgeStore.readView(ref))!.state);
      expect((await cloud.twins.history(ref, { limit: 100 })).map(sameEvent)).toEqual(log.map(sameEvent));
      // The engine refuses the write (edge-owned) and the node routes it down to the edge, which
      // no node serves here: UNAVAILABLE naming the edge, nothing written in the cloud.
      const refused = await cloud.twins.invoke(ref, "add", { by: 1, tag: "x" }).catch((e: unknown) => e);
      expect(refused).toMatchObject({
        code: "UNAVAILABLE",
        details: { reason: "edge-unreachable", edge: EDGE },
      });
      const desired = await cloud.twins.updateDesired(ref, { level: 1 }).catch((e: unknown) => e);
      expect(desired).toMatchObject({
        code: "UNAVAILABLE",
        details: { reason: "edge-unreachable", edge: EDGE },
      });
      expect((await cloudStore.readEvents(ref, 0)).length).toBe(6);
    } finally {
      await cloud.stop();
    }
  });

  it("decoding refuses malformed batches with INVALID_ARGUMENT", async () => {
    const good = await batch(1, 2);
    expect(decodeBatch(encodeBatch(good))).toEqual(good);
    const bad = (value: unknown) => () => decodeBatch(new TextEncoder().encode(JSON.stringify(value)));
    expect(() => decodeBatch(new TextEncoder().encode("{"))).toThrow(/not JSON/);
    expect(bad({ ...good, events: [] })).toThrow(/no events/);
    expect(bad({ ...good, events: [good.events[0], good.events[0]] })).toThrow(/not consecutive/);
    expect(bad({ ...good, ref: { type: "counter", id: "a.b" } })).toThrow(/INVALID|id/i);
    expect(bad({ ...good, view: { ...good.view, version: 9 } })).toThrow(/view version/);
    expect(bad({ ...good, view: { ...good.view, id: "other" } })).toThrow(/view is of/);
  });
});
