/**
 * Every edge as the cloud sees it (`doppel edge status`): the edges are the sources of the cloud's
 * ingress stream; each is asked for its own status across the leaf link. An edge that answers has
 * its link up and reports its backlog and last sync; one that does not is shown down, with the
 * cloud's last view of it (the source's lag and when it was last active).
 */
import { jetstreamManager, type StreamSourceInfo } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { streamInfoIfAny } from "../ingress/stream-config.ts";
import { edgeOfSource } from "./durable-source.ts";
import { type EdgeStatus, edgeStatusSubject } from "./edge-forwarder.ts";

/** One edge's line of `doppel edge status`. */
export interface EdgeReport {
  readonly edge: string;
  /** A thin edge (store-and-forward of device reports). */
  readonly kind: "thin";
  readonly linkUp: boolean;
  /** From the edge when it answers, else the cloud's last known lag. */
  readonly backlog: number;
  readonly lastSyncAt: number | undefined;
  /** The edge's own status, when it answered. */
  readonly status: EdgeStatus | undefined;
}

/** Asks every edge registered with the cloud's ingress stream for its status (none when there is no such stream). */
export async function edgeReports(
  nc: NatsConnection,
  options: { ingressStream: string; timeoutMs: number; now: () => number },
): Promise<EdgeReport[]> {
  const jsm = await jetstreamManager(nc, { timeout: options.timeoutMs });
  const info = await streamInfoIfAny(jsm, options.ingressStream);
  if (!info) return [];
  const sources = (info.sources ?? []) as (StreamSourceInfo & { external?: { api: string } })[];
  const reports: EdgeReport[] = [];
  for (const source of sources) {
    const edge = edgeOfSource(source);
    if (!edge) continue;
    let status: EdgeStatus | undefined;
    try {
      const reply = await nc.request(edgeStatusSubject(edge), new Uint8Array(), {
        timeout: options.timeoutMs,
      });
      status = JSON.parse(new TextDecoder().decode(reply.data)) as EdgeStatus;
    } catch {
      status = undefined;
    }
    const activeMs = source.active >= 0 ? source.active / 1e6 : undefined;
    reports.push({
      edge,
      kind: "thin",
      linkUp: status !== undefined,
      backlog: status?.backlog ?? source.lag,
      lastSyncAt: status?.lastSyncAt ?? (activeMs === undefined ? undefined : options.now() - activeMs),
      status,
    });
  }
  return reports;
}
