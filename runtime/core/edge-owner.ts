/**
 * Thick-edge ownership (docs/edge.md): a twin that runs at an edge is written in the cloud's store
 * only by the replicator, which stamps every event it copies with the edge's writer and the lease
 * epoch {@link EDGE_OWNED_EPOCH}, higher than any lease epoch a cloud node can hold. So the store's
 * own fencing (a claim or commit at an older epoch is refused, atomically with the write) keeps
 * every cloud writer off the twin: it is read-only in the cloud, whatever the timing. The engine
 * turns that refusal into {@link edgeOwnedError}, which names the edge.
 */
import { FailedPrecondition } from "./errors.ts";
import { refKey, type TwinRef } from "./ids.ts";
import type { Writer } from "./records.ts";

/** The lease epoch of replicated edge events: above every epoch a cloud node's lease can reach. */
export const EDGE_OWNED_EPOCH = Number.MAX_SAFE_INTEGER;

const PREFIX = "edge:";

/** The writer the replicator records for events an edge's node `node` wrote. */
export function edgeWriter(edge: string, node: string): Writer {
  return { node: `${PREFIX}${edge}/${node}`, epoch: EDGE_OWNED_EPOCH };
}

/** The edge that owns events written by `writer`, or `undefined` for a cloud writer. */
export function edgeOwnerOf(writer: Writer | undefined): string | undefined {
  if (!writer || writer.epoch !== EDGE_OWNED_EPOCH || !writer.node.startsWith(PREFIX)) return undefined;
  const rest = writer.node.slice(PREFIX.length);
  const slash = rest.indexOf("/");
  return slash < 0 ? rest : rest.slice(0, slash);
}

/**
 * The answer to a command, desired update or report for a twin an edge owns, in the cloud:
 * `FAILED_PRECONDITION` with `details.reason = "edge-owned"` and `details.edge`. Never retryable
 * here: the twin's writer is the edge (send it there).
 */
export function edgeOwnedError(ref: TwinRef, edge: string): FailedPrecondition {
  return new FailedPrecondition(
    `${refKey(ref)} is owned by edge ${edge}: it runs at the edge and is read-only in the cloud (queries, history and watch see it); send commands and desired state to the edge's node`,
    { reason: "edge-owned", edge },
  );
}
