/**
 * Names under an edge's own `doppel.edge.<edge>.>` that the node's entry point needs. This module
 * imports nothing, so node.ts can use it without loading NATS.
 */

/**
 * Where an edge node's requests get their answers (its connections' inbox prefix): under the
 * edge's own `doppel.edge.<edge>.>`, which a hub's per-edge user delivers to it.
 */
export function edgeInboxPrefix(edge: string): string {
  return `doppel.edge.${edge}.inbox`;
}
