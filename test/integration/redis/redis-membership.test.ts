import { afterEach, describe, expect, it } from "vitest";
import { NodeIdInUse, ShardCountMismatch } from "../../../cluster/membership/errors.ts";
import {
  DEFAULT_DEAD_AFTER_MS,
  DEFAULT_HEARTBEAT_MS,
} from "../../../cluster/membership/heartbeat-membership.ts";
import type { MemberInfo, MembershipChange } from "../../../cluster/membership/membership.ts";
import { RedisMembership, type RedisMembershipOptions } from "../../../cluster/membership/redis.ts";
import type { RedisConnection } from "../../../cluster/membership/redis-connection.ts";
import { eventually } from "../../support/eventually.ts";
import { connect, uniqueCluster } from "./redis-env.ts";

const FAST = { heartbeatMs: 100, deadAfterMs: 400 };

/**
 * Outer bound of every wait here: generous, because the machine may be loaded. No assertion
 * depends on how fast anything runs (only on what the membership reports, and in which order).
 */
const PATIENCE = 60_000;

const ids = (members: readonly MemberInfo[]) => members.map((m) => m.nodeId);

describe("RedisMembership", () => {
  const open: (RedisConnection | RedisMembership)[] = [];
  afterEach(async () => {
    for (const thing of open.reverse()) {
      if (thing instanceof RedisMembership) await thing.leave();
      else await thing.close();
    }
    open.length = 0;
  });

  async function member(options: Omit<RedisMembershipOptions, "redis">) {
    const redis = await connect({ commandTimeoutMs: 500 });
    const membership = new RedisMembership({ ...options, redis });
    open.push(redis, membership);
    return { membership, redis };
  }

  it("lists every joined node with its metadata, and heartbeats keep it listed", async () => {
    const cluster = uniqueCluster("members");
    const { membership: a } = await member({ cluster, shardCount: 256, ...FAST });
    const { membership: b } = await member({ cluster, shardCount: 256, ...FAST });
    expect(ids(await a.join({ nodeId: "a", meta: { grpc: "127.0.0.1:50051" } }))).toEqual(["a"]);
    expect(ids(await b.join({ nodeId: "b" }))).toEqual(["a", "b"]);
    await eventually(() => a.members().length === 2, "both members listed", PATIENCE);
    const firstBeat = a.members().find((m) => m.nodeId === "b")!.lastHeartbeat;
    // Well past deadAfterMs: heartbeats keep both listed, and b's heartbeat time moves on.
    await eventually(
      () => (a.members().find((m) => m.nodeId === "b")?.lastHeartbeat ?? 0) > firstBeat + 500,
      "b's heartbeat to move on",
      PATIENCE,
    );
    expect(ids(a.members())).toEqual(["a", "b"]);
    expect(b.members().find((m) => m.nodeId === "a")?.meta).toEqual({ grpc: "127.0.0.1:50051" });
    const updates: MembershipChange[] = [];
    a.onChange((c) => updates.push(c));
    await b.update({ twins: 42 });
    await eventually(
      () => updates.some((c) => c.updated.some((m) => m.nodeId === "b")),
      "b's update",
      PATIENCE,
    );
    expect(a.members().find((m) => m.nodeId === "b")?.meta).toEqual({ twins: 42 });
  });

  it(`never lists a crashed node once its last heartbeat is ${DEFAULT_DEAD_AFTER_MS} ms old, and reports it gone (default timings)`, async () => {
    const cluster = uniqueCluster("crash");
    const { membership: a } = await member({ cluster, shardCount: 256 });
    const { membership: b, redis: bRedis } = await member({ cluster, shardCount: 256 });
    await a.join({ nodeId: "a" });
    await b.join({ nodeId: "b" });
    await eventually(() => a.members().length === 2, "both members listed", PATIENCE);
    let goneAt: number | undefined;
    a.onChange((c) => {
      if (c.left.some((m) => m.nodeId === "b")) goneAt = performance.now();
    });
    // b crashes: its connection drops, nothing more is heard from it. Its last heartbeat reached
    // Redis before the close completed, so from `crashedAt` on its age is at least the time since.
    await bRedis.close();
    const crashedAt = performance.now();
    // members() never lists b once its last heartbeat is deadAfterMs old. The time is read
    // *before* each look, so a stall of this process can only make the check weaker, never fail it.
    await eventually(
      () => {
        const lookedAt = performance.now();
        if (a.members().some((m) => m.nodeId === "b"))
          expect(lookedAt - crashedAt, "b listed although dead").toBeLessThan(DEFAULT_DEAD_AFTER_MS + 50);
        return goneAt !== undefined;
      },
      "b reported gone",
      PATIENCE,
      10,
    );
    const detectedAfter = goneAt! - crashedAt;
    // Not before it was dead (its last beat may have been up to one period before the crash; the
    // margin is for Redis' clock against this one, not for speed: lateness only adds time).
    expect(detectedAfter).toBeGreaterThanOrEqual(DEFAULT_DEAD_AFTER_MS - DEFAULT_HEARTBEAT_MS - 300);
    expect(a.members().some((m) => m.nodeId === "b")).toBe(false);
    expect(ids(await a.refresh())).toEqual(["a"]);
    // How soon is a measurement, printed, not asserted (it depends on the machine's load).
    console.log(
      `crashed node reported gone ${Math.round(detectedAfter)} ms after the crash (deadAfterMs ${DEFAULT_DEAD_AFTER_MS})`,
    );
  });

  it("refuses a node configured with another shard count, with a clear error", async () => {
    const cluster = uniqueCluster("shards");
    const { membership: a } = await member({ cluster, shardCount: 256, ...FAST });
    const { membership: b } = await member({ cluster, shardCount: 128, ...FAST });
    await a.join({ nodeId: "a" });
    const error = await b.join({ nodeId: "b" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShardCountMismatch);
    expect((error as Error).message).toBe(
      `cluster "${cluster}" has 256 shards; this node is configured with 128`,
    );
    expect(ids(await a.refresh())).toEqual(["a"]);
  });

  it("refuses a second live node with the same id", async () => {
    const cluster = uniqueCluster("dup");
    const { membership: a } = await member({ cluster, shardCount: 256, ...FAST });
    const { membership: impostor } = await member({ cluster, shardCount: 256, ...FAST });
    await a.join({ nodeId: "a" });
    await expect(impostor.join({ nodeId: "a" })).rejects.toBeInstanceOf(NodeIdInUse);
  });

  it("removes a leaving node at once, not after deadAfterMs", async () => {
    const cluster = uniqueCluster("leave");
    // Ten minutes: longer than this test may run, so only the leave can remove b.
    const slow = { heartbeatMs: 1000, deadAfterMs: 600_000 };
    const { membership: a } = await member({ cluster, shardCount: 256, ...slow });
    const { membership: b } = await member({ cluster, shardCount: 256, ...slow });
    await a.join({ nodeId: "a" });
    await b.join({ nodeId: "b" });
    expect(ids(await a.refresh())).toEqual(["a", "b"]);
    await b.leave();
    expect(ids(await a.refresh())).toEqual(["a"]);
    expect(b.members()).toEqual([]);
  });

  it("lets a node that has not joined watch the members (e.g. the CLI)", async () => {
    const cluster = uniqueCluster("watch");
    const { membership: a } = await member({ cluster, shardCount: 256, ...FAST });
    const { membership: watcher } = await member({ cluster, shardCount: 256, ...FAST });
    const before = Date.now();
    await a.join({ nodeId: "a", meta: { twins: 3 } });
    const [only] = await watcher.refresh();
    const after = Date.now();
    expect(only).toMatchObject({ nodeId: "a", meta: { twins: 3 } });
    // Its heartbeat time (Redis TIME, the same host's clock) lies within the test's own span;
    // the second of margin is for the two clock readings, not for speed.
    expect(only!.lastHeartbeat).toBeGreaterThanOrEqual(before - 1000);
    expect(only!.lastHeartbeat).toBeLessThanOrEqual(after + 1000);
  });
});
