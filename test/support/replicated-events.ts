import type { EventRecord } from "../../runtime/core/records.ts";

/**
 * What the cloud's copy of an edge twin's event keeps of the edge's (its writer is the
 * replicator's, see docs/edge.md): compare logs as `cloud.map(sameEvent)` against `edge.map(sameEvent)`.
 */
export const sameEvent = (e: EventRecord) => ({
  seq: e.seq,
  type: e.type,
  data: e.data,
  at: e.at,
  commitId: e.commitId,
});
