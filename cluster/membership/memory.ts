/**
 * In-process membership: a {@link MemoryMembershipRegistry} plays the part of Redis for every
 * node of an in-process cluster (the multi-node harness, unit tests), with the same semantics:
 * records that expire `deadAfterMs` after their last heartbeat, by an injectable clock, and a
 * switch that makes the store unreachable to test outages.
 */

import { type Clock, wallClock } from "../clock.ts";
import { HeartbeatMembership, type MembershipOptions } from "./heartbeat-membership.ts";
import type { BeatResult, MemberRecord, MembershipRegistry, MembersRead, StoredMember } from "./registry.ts";

/** Thrown by a {@link MemoryMembershipRegistry} made unreachable with `available = false`. */
export class MemoryStoreUnavailable extends Error {
  readonly code = "STORE_UNAVAILABLE";
  constructor() {
    super("the in-memory membership store is unavailable (simulated outage)");
    this.name = "MemoryStoreUnavailable";
  }
}

interface Entry {
  readonly record: MemberRecord;
  readonly lastHeartbeat: number;
  readonly expiresAt: number;
}

/** One cluster's membership store, in memory. Its clock is "the store's clock" (Redis `TIME`). */
export class MemoryMembershipRegistry implements MembershipRegistry {
  /** When false, every operation rejects with {@link MemoryStoreUnavailable}. */
  available = true;
  #shardCount: number | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #clock: Pick<Clock, "now">;

  constructor(clock: Pick<Clock, "now"> = wallClock) {
    this.#clock = clock;
  }

  /** Forgets everything, as a store restarted without persistence. */
  flush(): void {
    this.#shardCount = undefined;
    this.#entries.clear();
  }

  async claimShardCount(shardCount: number): Promise<number> {
    this.#check();
    this.#shardCount ??= shardCount;
    return this.#shardCount;
  }

  async beat(
    record: MemberRecord,
    options: { readonly join: boolean; readonly deadAfterMs: number; readonly shardCount: number },
  ): Promise<BeatResult> {
    this.#check();
    const now = this.#clock.now();
    const existing = this.#live(record.nodeId, now);
    if (options.join && existing && existing.record.incarnation !== record.incarnation) {
      return { kind: "conflict", ageMs: now - existing.lastHeartbeat };
    }
    this.#entries.set(record.nodeId, { record, lastHeartbeat: now, expiresAt: now + options.deadAfterMs });
    this.#shardCount ??= options.shardCount;
    return { kind: "ok", ...this.#read(now, options.deadAfterMs), shardCount: this.#shardCount };
  }

  async read(deadAfterMs: number): Promise<MembersRead> {
    this.#check();
    return this.#read(this.#clock.now(), deadAfterMs);
  }

  async remove(nodeId: string, incarnation: string): Promise<void> {
    this.#check();
    if (this.#entries.get(nodeId)?.record.incarnation === incarnation) this.#entries.delete(nodeId);
  }

  #check(): void {
    if (!this.available) throw new MemoryStoreUnavailable();
  }

  #live(nodeId: string, now: number): Entry | undefined {
    const entry = this.#entries.get(nodeId);
    if (entry && entry.expiresAt <= now) {
      this.#entries.delete(nodeId);
      return undefined;
    }
    return entry;
  }

  #read(now: number, deadAfterMs: number): MembersRead {
    const members: StoredMember[] = [];
    for (const nodeId of [...this.#entries.keys()]) {
      const entry = this.#live(nodeId, now);
      if (!entry || now - entry.lastHeartbeat >= deadAfterMs) continue;
      const { record } = entry;
      members.push({
        nodeId,
        startedAt: record.startedAt,
        lastHeartbeat: entry.lastHeartbeat,
        meta: record.meta,
        ageMs: now - entry.lastHeartbeat,
      });
    }
    return { members };
  }
}

/**
 * Membership of one node in an in-process cluster whose store is `registry`. Give every node the
 * same registry and (in tests) the same manual clock; heartbeats then run on that clock's timers.
 * Fails as {@link HeartbeatMembership} does; an unreachable registry fails like an unreachable Redis.
 */
export class MemoryMembership extends HeartbeatMembership {
  constructor(registry: MemoryMembershipRegistry, options: MembershipOptions) {
    super(registry, options);
  }
}
