/**
 * Membership: which nodes are in the cluster now. Each node joins with its id and some metadata,
 * heartbeats while it runs, and leaves on shutdown; a node whose heartbeat is older than
 * `deadAfterMs` is dead and listed nowhere. Two implementations: {@link RedisMembership} (real
 * clusters) and {@link MemoryMembership} (in-process harness and unit tests).
 *
 * Membership decides *placement* only. It is not what makes writes safe: a node writes a shard
 * only while it holds that shard's lease (`cluster/leases`), so two nodes that briefly disagree
 * about the member list never both write one shard.
 */

/** A JSON value (what {@link MemberInfo.meta} may hold). */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | JsonRecord;

/** A JSON object. */
export interface JsonRecord {
  readonly [key: string]: JsonValue;
}

/** One live member of the cluster, as last read from the membership store. */
export interface MemberInfo {
  /** The node's id (unique among live members). */
  readonly nodeId: string;
  /** When the node joined: epoch milliseconds by the node's own clock. */
  readonly startedAt: number;
  /** When the store last heard from the node: epoch milliseconds by the store's clock (Redis `TIME`). */
  readonly lastHeartbeat: number;
  /** Whatever the node publishes about itself (e.g. `{ grpc: "10.0.0.5:50051", twins: 1200 }`). Opaque here. */
  readonly meta: JsonRecord;
}

/** What changed between two views of the membership (reported to {@link Membership.onChange}). */
export interface MembershipChange {
  /** The live members now, sorted by node id. */
  readonly members: readonly MemberInfo[];
  /** Members that were not in the previous view. */
  readonly joined: readonly MemberInfo[];
  /** Members of the previous view that are gone (left, or dead), as last seen. */
  readonly left: readonly MemberInfo[];
  /** Members in both views whose `meta` or `startedAt` changed. */
  readonly updated: readonly MemberInfo[];
}

/** What a node says about itself when it joins. */
export interface JoinInfo {
  /** The node id: non-empty; must not be the id of another live member. */
  readonly nodeId: string;
  /** Initial metadata (default `{}`); change it later with {@link Membership.update}. */
  readonly meta?: JsonRecord;
}

/** Listener of membership changes. Exceptions it throws are reported to `onError`, never propagated. */
export type MembershipListener = (change: MembershipChange) => void;

/**
 * This node's view of, and presence in, one cluster.
 *
 * Failure model: a failed heartbeat (store unreachable) is reported to the `onError` option and
 * retried on the next beat; meanwhile members age out of the view as their last known heartbeat
 * grows older than `deadAfterMs`, this node included, so after an outage of `deadAfterMs` the
 * view is empty (placement should then treat the node as cut off).
 */
export interface Membership {
  /** The cluster's name (part of every store key). */
  readonly cluster: string;

  /**
   * Joins the cluster: checks the cluster's shard count (the first node to join sets it), writes
   * this node's record, reads the members and starts heartbeating. Resolves with the members.
   * Fails with `ShardCountMismatch` when the cluster was created with another shard count,
   * `NodeIdInUse` when a live member already has this id, `MembershipStateError` when already
   * joined, or the store's error when it cannot be reached (nothing is then left running).
   */
  join(info: JoinInfo): Promise<readonly MemberInfo[]>;

  /** Replaces this node's metadata and writes it at once. Fails when not joined or the store is unreachable. */
  update(meta: JsonRecord): Promise<void>;

  /**
   * The live members as of the last heartbeat or refresh, minus any whose heartbeat has since
   * become older than `deadAfterMs`; sorted by node id. Never waits, never fails.
   */
  members(): readonly MemberInfo[];

  /**
   * Reads the members from the store now (e.g. when another node announces a change), reports
   * any change to the listeners and resolves with the members. Fails when the store is unreachable.
   */
  refresh(): Promise<readonly MemberInfo[]>;

  /** Calls `listener` after every change of {@link members}; returns a function that unsubscribes it. */
  onChange(listener: MembershipListener): () => void;

  /**
   * Leaves gracefully: stops heartbeating and deletes this node's record at once, so others see
   * it gone on their next read. Best effort: if the store is unreachable the record simply expires
   * after `deadAfterMs` (the returned promise still resolves). A no-op when not joined.
   */
  leave(): Promise<void>;
}
