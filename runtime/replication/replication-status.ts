/**
 * What the two sides of thick-edge replication tell `doppel edge status` over NATS (docs/edge.md),
 * in the way thin edges answer theirs (`doppel.edge.<edge>.status`):
 *
 * - the edge's `EdgeLogPublisher` answers on `doppel.edge.<edge>.log-status` with its
 *   {@link EdgeLogStatus} (a request that crosses the leaf link and is answered means the link is up);
 * - every cloud node running `CloudReplication` answers on {@link REPLICATION_STATUS_SUBJECT} with
 *   what its replicator did per edge ({@link ReplicationStatus}); the caller sums the answers of
 *   all of them (they share one durable consumer).
 */

import type { EdgeReplicationCounts } from "../core/replication-counts.ts";

export {
  type EdgeReplicationCounts,
  REPLICATION_OUTCOMES,
  type ReplicationCounts,
  zeroCounts,
} from "../core/replication-counts.ts";

/** A cloud node's answer on {@link REPLICATION_STATUS_SUBJECT}. */
export interface ReplicationStatus {
  /** The answering node, when it was given a name. */
  readonly node: string | undefined;
  readonly edges: Readonly<Record<string, Readonly<EdgeReplicationCounts>>>;
}

/** Subject on which every cloud node running `CloudReplication` answers status requests. */
export const REPLICATION_STATUS_SUBJECT = "doppel.edge-replication.status";

/** What a thick edge's log publisher knows, as it answers on {@link edgeLogStatusSubject}. */
export interface EdgeLogStatus {
  readonly edge: string;
  /** Whether its log is registered as a source of the cloud's (the link was up once). */
  readonly registered: boolean;
  /** Batches published into the edge's log stream since the publisher started. */
  readonly published: number;
  /** Twins with committed events not yet in the edge's log stream. */
  readonly pending: number;
  /** The last sequence of the edge's log stream (0 when empty). */
  readonly stored: number;
}

/** Subject on which a thick edge's log publisher answers status requests. */
export function edgeLogStatusSubject(edge: string): string {
  return `doppel.edge.${edge}.log-status`;
}
