/**
 * Placement as the router sees it: which node the ring assigns a shard to, and whether this node
 * may run the shard right now (it holds the shard's lease). A single node places everything on
 * itself.
 */

export interface Placement {
  /** This node's id. */
  readonly nodeId: string;
  /** The node the ring assigns `shard` to; `undefined` while no member is known. */
  ownerOf(shard: number): string | undefined;
  /** True while this node holds `shard`'s lease (so its writes are fenced in). */
  owns(shard: number): boolean;
}

/** The placement of a node that is alone: it owns every shard. */
export function soloPlacement(nodeId: string): Placement {
  return { nodeId, ownerOf: () => nodeId, owns: () => true };
}
