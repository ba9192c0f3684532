/**
 * Subjects of one edge's own that need no NATS client to name (this module imports nothing, so
 * the node's entry point can use it without loading NATS): every subject an edge node answers or
 * asks on lies under `doppel.edge.<edge>.>`, which a hub's per-edge user allows (hub-config.ts).
 */

/**
 * Where an edge node's requests get their answers (its connections' inbox prefix): under the
 * edge's own `doppel.edge.<edge>.>`, which a hub's per-edge user delivers to it.
 */
export function edgeInboxPrefix(edge: string): string {
  return `doppel.edge.${edge}.inbox`;
}
