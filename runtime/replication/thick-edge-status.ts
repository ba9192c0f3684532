/**
 * Every thick edge as the cloud sees it (`doppel edge status`): the thick edges are the sources of
 * the cloud's `DOPPEL_EDGE_LOGS`. For each:
 *
 * - **link**: the edge's log publisher is asked for its status across the leaf link
 *   (replication-status.ts); an answer means the link is up;
 * - **backlog**: batches of its log the cloud has not applied yet = those not yet sourced (the
 *   edge's log stream's last sequence minus the source's position when the edge answers, else the
 *   source's last known lag) + those in `DOPPEL_EDGE_LOGS` above the replicator consumer's ack
 *   floor. During an outage the cloud cannot see what the edge wrote since, so the backlog of an
 *   edge whose link is down is only what the cloud last knew (a lower bound);
 * - **last sync** and the replicator's **counts**: from every cloud node running
 *   `CloudReplication` (they answer one request each; the counts are summed).
 */
import {
  AckPolicy,
  type ConsumerInfo,
  DeliverPolicy,
  type JetStreamManager,
  jetstreamManager,
  type StreamSourceInfo,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/nats-core";
import { edgeOfSource } from "../devices/edge/durable-source.ts";
import { streamInfoIfAny } from "../devices/ingress/stream-config.ts";
import { REPLICATOR_CONSUMER } from "./cloud-replication.ts";
import { CLOUD_LOGS_STREAM } from "./edge-log.ts";
import { edgeLogSubjects } from "./replicated-batch.ts";
import {
  type EdgeLogStatus,
  edgeLogStatusSubject,
  REPLICATION_OUTCOMES,
  REPLICATION_STATUS_SUBJECT,
  type ReplicationCounts,
  type ReplicationStatus,
  zeroCounts,
} from "./replication-status.ts";

/** One thick edge's line of `doppel edge status`. */
export interface ThickEdgeReport {
  readonly edge: string;
  readonly kind: "thick";
  /** Whether the edge's log publisher answered across the leaf link. */
  readonly linkUp: boolean;
  /** Batches of the edge's log the cloud has not applied: `notSourced + unapplied`. */
  readonly backlog: number;
  /** Batches in the edge's log stream the cloud's stream has not copied yet (last known when the link is down). */
  readonly notSourced: number;
  /** Batches of the edge in the cloud's stream above the replicator's ack floor. */
  readonly unapplied: number;
  /** When a replicator last took a batch of the edge that the cloud then held (epoch ms). */
  readonly lastSyncAt: number | undefined;
  /** The replicators' counts for this edge, summed; undefined when no cloud node answered. */
  readonly counts: ReplicationCounts | undefined;
  /** How many cloud nodes answered with counts. */
  readonly replicators: number;
  /** The edge's own answer, when its link is up. */
  readonly log: EdgeLogStatus | undefined;
  /** The cloud's error for the source, when it reports one. */
  readonly sourceError: string | undefined;
}

type SourceOnWire = StreamSourceInfo & { external?: { api: string }; seq?: number };

/** Reports every thick edge registered with the cloud's `DOPPEL_EDGE_LOGS` (none when it does not exist). */
export async function thickEdgeReports(
  nc: NatsConnection,
  options: { timeoutMs: number },
): Promise<ThickEdgeReport[]> {
  const jsm = await jetstreamManager(nc, { timeout: options.timeoutMs });
  const info = await streamInfoIfAny(jsm, CLOUD_LOGS_STREAM);
  if (!info) return [];
  const sources = ((info.sources ?? []) as SourceOnWire[]).flatMap((source) => {
    const edge = edgeOfSource(source);
    return edge ? [{ edge, source }] : [];
  });
  if (sources.length === 0) return [];
  const consumer = await jsm.consumers.info(CLOUD_LOGS_STREAM, REPLICATOR_CONSUMER).catch(() => undefined);
  const answers = await replicatorAnswers(nc, options.timeoutMs);
  const reports: ThickEdgeReport[] = [];
  for (const { edge, source } of sources) {
    const log = await edgeLogStatus(nc, edge, options.timeoutMs);
    const notSourced =
      log && source.seq !== undefined ? Math.max(0, log.stored - source.seq) : Math.max(0, source.lag);
    const unapplied = await unappliedOf(jsm, edge, consumer);
    const mine = answers.flatMap((answer) => {
      const counts = answer.edges[edge];
      return counts ? [counts] : [];
    });
    const synced = mine.flatMap((c) => (c.lastSyncAt === undefined ? [] : [c.lastSyncAt]));
    reports.push({
      edge,
      kind: "thick",
      linkUp: log !== undefined,
      backlog: notSourced + unapplied,
      notSourced,
      unapplied,
      lastSyncAt: synced.length > 0 ? Math.max(...synced) : undefined,
      counts: answers.length > 0 ? sum(mine) : undefined,
      replicators: answers.length,
      log,
      sourceError: source.error?.description,
    });
  }
  return reports;
}

async function edgeLogStatus(
  nc: NatsConnection,
  edge: string,
  timeoutMs: number,
): Promise<EdgeLogStatus | undefined> {
  try {
    const reply = await nc.request(edgeLogStatusSubject(edge), new Uint8Array(), { timeout: timeoutMs });
    return reply.json<EdgeLogStatus>();
  } catch {
    return undefined;
  }
}

/**
 * Every cloud replicator's answer: those arriving until none came for a quarter of the timeout
 * after the last (or the timeout). None when no cloud node replicates.
 */
async function replicatorAnswers(nc: NatsConnection, timeoutMs: number): Promise<ReplicationStatus[]> {
  const answers: ReplicationStatus[] = [];
  try {
    const replies = await nc.requestMany(REPLICATION_STATUS_SUBJECT, new Uint8Array(), {
      strategy: "stall",
      maxWait: timeoutMs,
      stall: Math.max(100, timeoutMs / 4),
    });
    for await (const reply of replies) {
      answers.push(reply.json<ReplicationStatus>());
    }
  } catch {
    // No responders (no cloud node replicates) or the wait ended: what arrived is the answer.
  }
  return answers;
}

/**
 * The edge's batches in the cloud's stream the replicator has not acknowledged: none when its
 * consumer has nothing pending; else counted by a short-lived filtered consumer that starts after
 * the ack floor (an upper bound: a batch acknowledged out of order above the floor counts).
 */
async function unappliedOf(
  jsm: JetStreamManager,
  edge: string,
  consumer: ConsumerInfo | undefined,
): Promise<number> {
  if (consumer && consumer.num_pending + consumer.num_ack_pending === 0) return 0;
  const probe = await jsm.consumers.add(CLOUD_LOGS_STREAM, {
    filter_subject: edgeLogSubjects(edge),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: (consumer?.ack_floor.stream_seq ?? 0) + 1,
    ack_policy: AckPolicy.None,
    inactive_threshold: nanos(60_000),
    mem_storage: true,
  });
  try {
    return probe.num_pending;
  } finally {
    await jsm.consumers.delete(CLOUD_LOGS_STREAM, probe.name).catch(() => undefined);
  }
}

function sum(all: readonly ReplicationCounts[]): ReplicationCounts {
  const total = zeroCounts();
  for (const counts of all)
    for (const outcome of REPLICATION_OUTCOMES) total[outcome] += counts[outcome] ?? 0;
  return total;
}
