/**
 * The storage side of membership: the few atomic operations a {@link HeartbeatMembership} needs
 * from a store. Redis implements them with Lua scripts (`redis.ts`), the in-process registry with
 * plain maps (`memory.ts`).
 */

import type { JsonRecord } from "./membership.ts";

/** A node's record as written by the node. */
export interface MemberRecord {
  readonly nodeId: string;
  /** Random per join: tells this process's record from that of another process with the same id. */
  readonly incarnation: string;
  readonly startedAt: number;
  readonly meta: JsonRecord;
}

/** A live member as read from the store, with its heartbeat age by the store's clock at the read. */
export interface StoredMember {
  readonly nodeId: string;
  readonly startedAt: number;
  readonly lastHeartbeat: number;
  readonly meta: JsonRecord;
  readonly ageMs: number;
}

/** The result of a read: the live members (heartbeat younger than `deadAfterMs`), in any order. */
export interface MembersRead {
  readonly members: readonly StoredMember[];
  /** The cluster's shard count as stored (after setting it if it was missing), if it was checked. */
  readonly shardCount?: number;
}

/** Result of {@link MembershipRegistry.beat}: the read, or the live member that already has our id. */
export type BeatResult =
  | ({ readonly kind: "ok" } & MembersRead)
  | { readonly kind: "conflict"; readonly ageMs: number | undefined };

/** The store operations of one cluster's membership. Every method rejects when the store is unreachable. */
export interface MembershipRegistry {
  /** Sets the cluster's shard count if it has none (first writer wins); resolves with the stored count. */
  claimShardCount(shardCount: number): Promise<number>;
  /**
   * Atomically: when `join`, refuses (`conflict`) if a live record with this id but another
   * incarnation exists; writes the record with lifetime `deadAfterMs` and the heartbeat time (store
   * clock); re-sets the shard count if it was lost; and reads the live members.
   */
  beat(
    record: MemberRecord,
    options: { readonly join: boolean; readonly deadAfterMs: number; readonly shardCount: number },
  ): Promise<BeatResult>;
  /** Reads the live members without writing. */
  read(deadAfterMs: number): Promise<MembersRead>;
  /** Deletes the record of `nodeId` if it is still `incarnation`'s. */
  remove(nodeId: string, incarnation: string): Promise<void>;
}
