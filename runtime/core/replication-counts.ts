/**
 * The vocabulary of thick-edge replication's counts (docs/edge.md): what a cloud replicator did
 * with the batches of an edge's log. Shared by the replicator (which counts), its status answers
 * (`doppel edge status`) and the node's metrics (`doppel_edge_replication_*`).
 */

/** Counts of what a replicator did with the batches it took. */
export interface ReplicationCounts {
  applied: number;
  duplicate: number;
  gap: number;
  conflict: number;
  malformed: number;
  /** Batches whose edge field, subject and source (the hub's `Nats-Stream-Source`) disagree: refused. */
  forged: number;
  failed: number;
}

export const REPLICATION_OUTCOMES: readonly (keyof ReplicationCounts)[] = [
  "applied",
  "duplicate",
  "gap",
  "conflict",
  "malformed",
  "forged",
  "failed",
];

export function zeroCounts(): ReplicationCounts {
  return { applied: 0, duplicate: 0, gap: 0, conflict: 0, malformed: 0, forged: 0, failed: 0 };
}

/** One edge's counts at one replicator, and when it last took a batch the cloud then held. */
export interface EdgeReplicationCounts extends ReplicationCounts {
  /** Epoch ms of the last batch of the edge applied (or found already applied), if any. */
  lastSyncAt: number | undefined;
}
