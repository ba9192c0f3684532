/**
 * `doppel edge status`: each edge registered with the cloud, its leaf link, backlog and last sync:
 * thin edges (store-and-forward, sources of the ingress stream) and thick edges (their twins' logs,
 * sources of `DOPPEL_EDGE_LOGS`, with the cloud replicators' counts).
 */

import type { NatsCredentials } from "../../cluster/transport/nats.ts";
import { NatsTransport } from "../../cluster/transport/nats.ts";
import { edgeReports } from "../devices/edge/edge-status.ts";
import type { ReplicationCounts } from "../replication/replication-status.ts";
import { type ThickEdgeReport, thickEdgeReports } from "../replication/thick-edge-status.ts";
import { table } from "./format.ts";

export interface EdgeStatusFlags {
  readonly nats?: string;
  readonly user?: string;
  readonly password?: string;
  readonly creds?: string;
  readonly stream?: string;
  readonly json?: boolean;
}

function credentialsOf(flags: EdgeStatusFlags): NatsCredentials | undefined {
  if (flags.creds) return { credsFile: flags.creds };
  if (flags.user) return { user: flags.user, pass: flags.password ?? "" };
  return undefined;
}

const ago = (at: number | undefined, now: number) =>
  at === undefined ? "never" : `${Math.max(0, Math.round((now - at) / 1000))} s ago`;

/** Prints every edge's link, backlog and last sync (thin edges, then thick edges). */
export async function edgeStatusCommand(flags: EdgeStatusFlags, out: (line: string) => void): Promise<void> {
  const servers = flags.nats ?? process.env["DOPPEL_NATS"] ?? "nats://127.0.0.1:4222";
  const credentials = credentialsOf(flags);
  const transport = await NatsTransport.connect({
    servers,
    name: "doppel-edge-status",
    maxReconnectAttempts: 0,
    ...(credentials ? { credentials } : {}),
  });
  try {
    const now = Date.now();
    const reports = await edgeReports(transport.connection, {
      ingressStream: flags.stream ?? "DOPPEL_INGRESS",
      timeoutMs: 2000,
      now: () => now,
    });
    const thick = await thickEdgeReports(transport.connection, { timeoutMs: 2000 });
    if (flags.json) {
      for (const report of [...reports, ...thick]) out(JSON.stringify(report));
      return;
    }
    if (reports.length === 0 && thick.length === 0) {
      out(
        "no edges: none is registered as a source of the cloud's ingress stream or of its edge logs (DOPPEL_EDGE_LOGS)",
      );
      return;
    }
    if (reports.length > 0)
      out(
        table(
          ["EDGE", "LINK", "BACKLOG", "LAST SYNC", "DROPPED", "BUFFER"],
          reports.map((r) => [
            r.edge,
            r.linkUp ? "up" : "down",
            String(r.backlog),
            ago(r.lastSyncAt, now),
            r.status ? String(r.status.dropped) : "?",
            r.status
              ? `${r.status.backlogBytes}/${r.status.maxBytes} B, full: discard ${r.status.discard}`
              : "?",
          ]),
        ),
      );
    if (thick.length > 0) {
      if (reports.length > 0) out("");
      const count = (r: ThickEdgeReport, outcome: keyof ReplicationCounts) =>
        r.counts ? String(r.counts[outcome]) : "?";
      out(
        table(
          [
            "THICK EDGE",
            "LINK",
            "BACKLOG",
            "LAST SYNC",
            "APPLIED",
            "DUPLICATE",
            "GAP",
            "CONFLICT",
            "MALFORMED",
            "FORGED",
          ],
          thick.map((r) => [
            r.edge,
            r.linkUp ? "up" : "down",
            // Link down: the cloud cannot see what the edge wrote since; at least this much.
            r.linkUp ? String(r.backlog) : `>=${r.backlog}`,
            ago(r.lastSyncAt, now),
            count(r, "applied"),
            count(r, "duplicate"),
            count(r, "gap"),
            count(r, "conflict"),
            count(r, "malformed"),
            count(r, "forged"),
          ]),
        ),
      );
      if (thick.some((r) => r.replicators === 0))
        out("? : no cloud node answered for the edge replicator (none runs CloudReplication)");
    }
  } finally {
    await transport.close();
  }
}
