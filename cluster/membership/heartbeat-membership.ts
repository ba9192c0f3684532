/**
 * The heartbeat loop and the member view, over any {@link MembershipRegistry}: what
 * {@link RedisMembership} and {@link MemoryMembership} share.
 *
 * Invariants:
 * - the view only moves forward: a read answered after a newer one is dropped;
 * - {@link members} never lists a member whose last heartbeat is older than `deadAfterMs`: ages
 *   come from the store's clock at the read, plus the local time elapsed since the read was *sent*
 *   (an over-estimate, so a dead member is dropped early rather than late);
 * - listeners hear of every change of {@link members}: at the heartbeat, refresh or update that
 *   read it, or — for a member that ages out between reads — at the moment it does.
 */

import { randomUUID } from "node:crypto";
import { type Clock, type TimerHandle, wallClock } from "../clock.ts";
import { MembershipStateError, NodeIdInUse, ShardCountMismatch } from "./errors.ts";
import type {
  JoinInfo,
  JsonRecord,
  MemberInfo,
  Membership,
  MembershipChange,
  MembershipListener,
} from "./membership.ts";
import type { MemberRecord, MembershipRegistry, StoredMember } from "./registry.ts";

/** Default heartbeat period. */
export const DEFAULT_HEARTBEAT_MS = 500;
/** Default age after which a silent node is dead: a crashed node is gone from every view within 2–2.5 s. */
export const DEFAULT_DEAD_AFTER_MS = 2000;

/** Options shared by every membership implementation. */
export interface MembershipOptions {
  /** Cluster name: non-empty, no `:` (it is a store key segment). */
  readonly cluster: string;
  /** The shard count S this node is configured with; must match the cluster's. */
  readonly shardCount: number;
  /** Heartbeat (and poll) period, ms; default {@link DEFAULT_HEARTBEAT_MS}. */
  readonly heartbeatMs?: number;
  /** A node is dead once its heartbeat is this old, ms; default {@link DEFAULT_DEAD_AFTER_MS}; must exceed 2 × `heartbeatMs`. */
  readonly deadAfterMs?: number;
  /** Wall clock and timers; default the system clock. */
  readonly clock?: Clock;
  /** Told of failed heartbeats, listener exceptions and a shard count changed under a running cluster. */
  readonly onError?: (error: unknown) => void;
}

interface Joined {
  record: MemberRecord;
  timer: TimerHandle | undefined;
}

/**
 * {@link Membership} over a {@link MembershipRegistry}. Construction throws `RangeError` on invalid
 * options (empty cluster name or one containing `:`, shard count not a positive integer,
 * `deadAfterMs` ≤ 2 × `heartbeatMs`).
 */
export class HeartbeatMembership implements Membership {
  readonly cluster: string;
  readonly shardCount: number;
  readonly heartbeatMs: number;
  readonly deadAfterMs: number;
  readonly #registry: MembershipRegistry;
  readonly #clock: Clock;
  readonly #onError: (error: unknown) => void;
  readonly #listeners = new Set<MembershipListener>();
  #joined: Joined | undefined;
  #joining = false;
  /** The latest applied read, and the local time its request was sent. */
  #view: { readonly members: readonly StoredMember[]; readonly sentAt: number } = { members: [], sentAt: 0 };
  #sent = 0;
  #applied = 0;
  /** The members last reported to listeners, by id. */
  #reported = new Map<string, MemberInfo>();
  /** Fires when the next member of the view ages out, to report it at once. */
  #agingTimer: TimerHandle | undefined;

  constructor(registry: MembershipRegistry, options: MembershipOptions) {
    const heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const deadAfterMs = options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS;
    if (options.cluster.length === 0 || options.cluster.includes(":")) {
      throw new RangeError(`invalid cluster name "${options.cluster}": non-empty, without ':'`);
    }
    if (!Number.isInteger(options.shardCount) || options.shardCount < 1) {
      throw new RangeError(`shard count must be a positive integer, got ${options.shardCount}`);
    }
    if (!(heartbeatMs > 0) || !(deadAfterMs > 2 * heartbeatMs)) {
      throw new RangeError(
        `need 0 < heartbeatMs and deadAfterMs > 2 × heartbeatMs, got ${heartbeatMs} and ${deadAfterMs}`,
      );
    }
    this.cluster = options.cluster;
    this.shardCount = options.shardCount;
    this.heartbeatMs = heartbeatMs;
    this.deadAfterMs = deadAfterMs;
    this.#registry = registry;
    this.#clock = options.clock ?? wallClock;
    this.#onError = options.onError ?? (() => {});
  }

  /** This node's id while joined. */
  get nodeId(): string | undefined {
    return this.#joined?.record.nodeId;
  }

  async join(info: JoinInfo): Promise<readonly MemberInfo[]> {
    if (this.#joined || this.#joining) throw new MembershipStateError(`already joined "${this.cluster}"`);
    if (info.nodeId.length === 0) throw new RangeError("node id must not be empty");
    this.#joining = true;
    try {
      const stored = await this.#registry.claimShardCount(this.shardCount);
      if (stored !== this.shardCount) throw new ShardCountMismatch(this.cluster, stored, this.shardCount);
      const record: MemberRecord = {
        nodeId: info.nodeId,
        incarnation: randomUUID(),
        startedAt: this.#clock.now(),
        meta: info.meta ?? {},
      };
      const seq = ++this.#sent;
      const sentAt = this.#clock.now();
      const result = await this.#registry.beat(record, this.#beatOptions(true));
      if (result.kind === "conflict") throw new NodeIdInUse(this.cluster, info.nodeId, result.ageMs);
      this.#joined = { record, timer: undefined };
      this.#apply(seq, sentAt, result.members);
      this.#schedule();
      return this.members();
    } finally {
      this.#joining = false;
    }
  }

  async update(meta: JsonRecord): Promise<void> {
    const joined = this.#joined;
    if (!joined) throw new MembershipStateError(`not joined to "${this.cluster}"`);
    joined.record = { ...joined.record, meta };
    await this.heartbeat();
  }

  members(): readonly MemberInfo[] {
    const elapsed = Math.max(0, this.#clock.now() - this.#view.sentAt);
    return this.#view.members
      .filter((m) => m.ageMs + elapsed < this.deadAfterMs)
      .map(
        (m): MemberInfo => ({
          nodeId: m.nodeId,
          startedAt: m.startedAt,
          lastHeartbeat: m.lastHeartbeat,
          meta: m.meta,
        }),
      )
      .sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  }

  async refresh(): Promise<readonly MemberInfo[]> {
    const seq = ++this.#sent;
    const sentAt = this.#clock.now();
    const read = await this.#registry.read(this.deadAfterMs);
    this.#apply(seq, sentAt, read.members);
    return this.members();
  }

  /**
   * Heartbeats now (instead of waiting for the timer): writes the record and reads the members.
   * Fails when not joined or when the store is unreachable (the loop keeps running).
   */
  async heartbeat(): Promise<void> {
    const joined = this.#joined;
    if (!joined) throw new MembershipStateError(`not joined to "${this.cluster}"`);
    const seq = ++this.#sent;
    const sentAt = this.#clock.now();
    const result = await this.#registry.beat(joined.record, this.#beatOptions(false));
    if (this.#joined !== joined || result.kind !== "ok") return;
    if (result.shardCount !== undefined && result.shardCount !== this.shardCount) {
      // Someone re-created the cluster with another S after the store lost its data.
      this.#onError(new ShardCountMismatch(this.cluster, result.shardCount, this.shardCount));
    }
    this.#apply(seq, sentAt, result.members);
  }

  onChange(listener: MembershipListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async leave(): Promise<void> {
    const joined = this.#joined;
    if (!joined) return;
    this.#joined = undefined;
    joined.timer?.cancel();
    this.#agingTimer?.cancel();
    this.#agingTimer = undefined;
    // Drop the view without reporting it: a leaving node stops caring about placement.
    this.#view = { members: [], sentAt: this.#clock.now() };
    this.#applied = ++this.#sent;
    this.#reported = new Map();
    try {
      await this.#registry.remove(joined.record.nodeId, joined.record.incarnation);
    } catch (error) {
      this.#onError(error); // the record expires by itself after deadAfterMs
    }
  }

  #beatOptions(join: boolean) {
    return { join, deadAfterMs: this.deadAfterMs, shardCount: this.shardCount };
  }

  #schedule(): void {
    const joined = this.#joined;
    if (!joined) return;
    joined.timer = this.#clock.setTimeout(() => void this.#tick(joined), this.heartbeatMs);
  }

  async #tick(joined: Joined): Promise<void> {
    if (this.#joined !== joined) return;
    try {
      await this.heartbeat();
    } catch (error) {
      this.#onError(error);
      this.#report(); // members age out while the store is unreachable
    }
    if (this.#joined === joined) this.#schedule();
  }

  #apply(seq: number, sentAt: number, members: readonly StoredMember[]): void {
    if (seq <= this.#applied) return; // an older read answered late
    this.#applied = seq;
    this.#view = { members, sentAt };
    this.#report();
  }

  /** Tells listeners how {@link members} differs from what they were last told, if at all. */
  #report(): void {
    const now = this.members();
    const before = this.#reported;
    const joined: MemberInfo[] = [];
    const updated: MemberInfo[] = [];
    const after = new Map<string, MemberInfo>();
    for (const member of now) {
      after.set(member.nodeId, member);
      const old = before.get(member.nodeId);
      if (!old) joined.push(member);
      else if (old.startedAt !== member.startedAt || JSON.stringify(old.meta) !== JSON.stringify(member.meta))
        updated.push(member);
    }
    const left = [...before.values()].filter((m) => !after.has(m.nodeId));
    this.#reported = after;
    this.#armAging();
    if (joined.length + left.length + updated.length === 0) return;
    const change: MembershipChange = { members: now, joined, left, updated };
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  /** Schedules a report for when the first member still listed reaches `deadAfterMs`. */
  #armAging(): void {
    this.#agingTimer?.cancel();
    this.#agingTimer = undefined;
    const elapsed = Math.max(0, this.#clock.now() - this.#view.sentAt);
    let next = Number.POSITIVE_INFINITY;
    for (const member of this.#view.members) {
      const remaining = this.deadAfterMs - (member.ageMs + elapsed);
      if (remaining > 0) next = Math.min(next, remaining);
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.#agingTimer = this.#clock.setTimeout(() => {
      this.#agingTimer = undefined;
      this.#report();
    }, next);
  }
}
