/**
 * `doppel edge hub-config --edge NAME:PASSWORD ...`: prints the cloud's nats-server
 * `authorization` block with one leaf-only user per edge, each with only the permissions its edge
 * needs (devices/edge/hub-config.ts, docs/edge.md "The hub's configuration"). The edge's leaf
 * server connects as that user (`doppel edge leaf-config --upstream nats://NAME:PASSWORD@cloud:7422`).
 */
import { InvalidArgument } from "../core/errors.ts";
import { type HubEdgeUser, hubAuthorizationConfig } from "../devices/edge/hub-config.ts";

export interface HubConfigFlags {
  /** `NAME:PASSWORD` per edge: the edge's name is also its hub user. */
  readonly edge?: readonly string[];
}

/** One `--edge NAME:PASSWORD` (the password may contain `:`); `InvalidArgument` naming the flag otherwise. */
export function parseEdgeUser(value: string): HubEdgeUser {
  const colon = value.indexOf(":");
  if (colon <= 0 || colon === value.length - 1)
    throw new InvalidArgument(`--edge ${JSON.stringify(value)} must be NAME:PASSWORD`, { field: "--edge" });
  const edge = value.slice(0, colon);
  return { edge, user: edge, password: value.slice(colon + 1) };
}

export function hubConfigCommand(flags: HubConfigFlags, out: (line: string) => void): void {
  const edges = (flags.edge ?? []).map(parseEdgeUser);
  if (edges.length === 0)
    throw new InvalidArgument("give at least one --edge NAME:PASSWORD", { field: "--edge" });
  out(hubAuthorizationConfig(edges));
}
