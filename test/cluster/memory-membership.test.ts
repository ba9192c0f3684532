import { describe, expect, it } from "vitest";
import { MembershipStateError, NodeIdInUse, ShardCountMismatch } from "../../cluster/membership/errors.ts";
import { HeartbeatMembership } from "../../cluster/membership/heartbeat-membership.ts";
import type { MembershipChange } from "../../cluster/membership/membership.ts";
import { MemoryMembership, MemoryMembershipRegistry } from "../../cluster/membership/memory.ts";
import type { MembershipRegistry } from "../../cluster/membership/registry.ts";
import { FakeClock } from "./fake-clock.ts";

const HEARTBEAT = 500;
const DEAD_AFTER = 2000;

/** A registry seen through a link that can be cut: the node behind it is partitioned away (or crashed). */
class Link implements MembershipRegistry {
  cut = false;
  constructor(readonly inner: MembershipRegistry) {}
  claimShardCount: MembershipRegistry["claimShardCount"] = (s) =>
    this.#gate(() => this.inner.claimShardCount(s));
  beat: MembershipRegistry["beat"] = (r, o) => this.#gate(() => this.inner.beat(r, o));
  read: MembershipRegistry["read"] = (d) => this.#gate(() => this.inner.read(d));
  remove: MembershipRegistry["remove"] = (n, i) => this.#gate(() => this.inner.remove(n, i));
  async #gate<T>(fn: () => Promise<T>): Promise<T> {
    if (this.cut) throw new Error("link cut");
    return fn();
  }
}

function setup() {
  const clock = new FakeClock();
  const registry = new MemoryMembershipRegistry(clock);
  const errors: unknown[] = [];
  const options = (shardCount: number, cluster: string) => ({
    cluster,
    shardCount,
    heartbeatMs: HEARTBEAT,
    deadAfterMs: DEAD_AFTER,
    clock,
    onError: (e: unknown) => errors.push(e),
  });
  /** A node with direct access to the store. */
  const node = (shardCount = 256, cluster = "test") =>
    new MemoryMembership(registry, options(shardCount, cluster));
  /** A node behind a link the test can cut. */
  const linked = () => {
    const link = new Link(registry);
    return { membership: new HeartbeatMembership(link, options(256, "test")), link };
  };
  return { clock, registry, node, linked, errors };
}

const ids = (list: readonly { nodeId: string }[]) => list.map((m) => m.nodeId);

describe("memory membership", () => {
  it("lists every joined node, itself included, with its metadata", async () => {
    const { clock, node } = setup();
    const a = node();
    const b = node();
    expect(ids(await a.join({ nodeId: "a", meta: { grpc: "10.0.0.1:50051" } }))).toEqual(["a"]);
    expect(ids(await b.join({ nodeId: "b" }))).toEqual(["a", "b"]);
    expect(ids(a.members())).toEqual(["a"]); // a has not polled since b joined
    await clock.advance(HEARTBEAT);
    expect(a.members()).toEqual([
      { nodeId: "a", startedAt: 1_000_000, lastHeartbeat: 1_000_500, meta: { grpc: "10.0.0.1:50051" } },
      // a's beat at +500 ran (and read) just before b's beat at +500.
      { nodeId: "b", startedAt: 1_000_000, lastHeartbeat: 1_000_000, meta: {} },
    ]);
    await a.leave();
    await b.leave();
  });

  it("reports joins, metadata updates and graceful leaves to listeners", async () => {
    const { clock, node } = setup();
    const a = node();
    const b = node();
    const changes: MembershipChange[] = [];
    a.onChange((change) => changes.push(change));
    await a.join({ nodeId: "a" });
    await b.join({ nodeId: "b" });
    await clock.advance(HEARTBEAT);
    await b.update({ twins: 12 });
    await clock.advance(HEARTBEAT);
    await b.leave();
    await a.refresh(); // e.g. on a NATS announcement: no need to wait for the next heartbeat
    expect(changes.map((c) => ({ ...ids4(c) }))).toEqual([
      { joined: ["a"], left: [], updated: [], members: ["a"] },
      { joined: ["b"], left: [], updated: [], members: ["a", "b"] },
      { joined: [], left: [], updated: ["b"], members: ["a", "b"] },
      { joined: [], left: ["b"], updated: [], members: ["a"] },
    ]);
    expect(changes[2]!.updated[0]!.meta).toEqual({ twins: 12 });
    await a.leave();
  });

  it("drops a node that stops heartbeating exactly deadAfterMs after its last heartbeat", async () => {
    const { clock, linked, errors } = setup();
    const { membership: a } = linked();
    const { membership: b, link } = linked();
    await a.join({ nodeId: "a" });
    await b.join({ nodeId: "b" });
    const left: string[] = [];
    a.onChange((change) => left.push(...ids(change.left)));
    await clock.advance(HEARTBEAT); // both beat at +500
    link.cut = true; // b crashes (or is partitioned away) right after its beat at +500
    const lastBeat = clock.now();
    await clock.advance(DEAD_AFTER - 1);
    expect(ids(a.members())).toEqual(["a", "b"]);
    expect(left).toEqual([]);
    await clock.advance(1);
    // Gone at lastBeat + deadAfterMs even between polls (members() ages the last read), and
    // listeners are told at that moment.
    expect(clock.now() - lastBeat).toBe(DEAD_AFTER);
    expect(ids(a.members())).toEqual(["a"]);
    expect(left).toEqual(["b"]);
    expect(ids(await a.refresh())).toEqual(["a"]);
    expect(errors.length).toBeGreaterThan(0); // b's failed heartbeats were reported
    await a.leave();
  });

  it("refuses to join a cluster created with another shard count", async () => {
    const { node } = setup();
    await node(256, "plant").join({ nodeId: "a" });
    const other = node(128, "plant");
    const error = await other.join({ nodeId: "b" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShardCountMismatch);
    expect((error as Error).message).toBe('cluster "plant" has 256 shards; this node is configured with 128');
    expect(other.members()).toEqual([]);
  });

  it("refuses a node id that a live member already uses, and accepts it once that member is dead", async () => {
    const { clock, linked } = setup();
    const { membership: first, link } = linked();
    await first.join({ nodeId: "a" });
    const { membership: second } = linked();
    await expect(second.join({ nodeId: "a" })).rejects.toBeInstanceOf(NodeIdInUse);
    link.cut = true;
    await clock.advance(DEAD_AFTER);
    expect(ids(await second.join({ nodeId: "a" }))).toEqual(["a"]);
    await second.leave();
  });

  it("lets members age out while the store is unreachable, itself included, and recovers", async () => {
    const { clock, registry, node, errors } = setup();
    const a = node();
    const b = node();
    await a.join({ nodeId: "a" });
    await b.join({ nodeId: "b" });
    await clock.advance(HEARTBEAT);
    registry.available = false;
    await clock.advance(DEAD_AFTER);
    expect(a.members()).toEqual([]);
    expect(errors.length).toBeGreaterThan(0);
    registry.available = true;
    await clock.advance(HEARTBEAT);
    await clock.advance(HEARTBEAT);
    expect(ids(a.members())).toEqual(["a", "b"]);
    await a.leave();
    await b.leave();
  });

  it("rejoins after a store restart that lost every record, and restores the shard count", async () => {
    const { clock, registry, node } = setup();
    const a = node();
    await a.join({ nodeId: "a" });
    registry.flush();
    await clock.advance(HEARTBEAT);
    expect(ids(a.members())).toEqual(["a"]);
    await expect(node(128).join({ nodeId: "b" })).rejects.toBeInstanceOf(ShardCountMismatch);
    await a.leave();
  });

  it("refuses calls its state does not allow, and invalid options", async () => {
    const { node, clock, registry } = setup();
    const a = node();
    await expect(a.update({})).rejects.toBeInstanceOf(MembershipStateError);
    await a.join({ nodeId: "a" });
    await expect(a.join({ nodeId: "a" })).rejects.toBeInstanceOf(MembershipStateError);
    await a.leave();
    await a.leave(); // a no-op
    expect(a.members()).toEqual([]);
    const options = { cluster: "c", shardCount: 256, clock };
    expect(() => new MemoryMembership(registry, { ...options, cluster: "a:b" })).toThrow(RangeError);
    expect(() => new MemoryMembership(registry, { ...options, shardCount: 0 })).toThrow(RangeError);
    expect(() => new MemoryMembership(registry, { ...options, heartbeatMs: 500, deadAfterMs: 1000 })).toThrow(
      RangeError,
    );
  });

  it("reports a listener's exception to onError and keeps notifying the others", async () => {
    const { node, errors } = setup();
    const a = node();
    const seen: string[] = [];
    a.onChange(() => {
      throw new Error("listener failed");
    });
    const unsubscribe = a.onChange((c) => seen.push(...ids(c.joined)));
    await a.join({ nodeId: "a" });
    unsubscribe();
    expect(seen).toEqual(["a"]);
    expect(errors).toEqual([new Error("listener failed")]);
    await a.leave();
  });
});

function ids4(change: MembershipChange) {
  return {
    joined: ids(change.joined),
    left: ids(change.left),
    updated: ids(change.updated),
    members: ids(change.members),
  };
}
