/**
 * The cloud's side of thick-edge replication over JetStream (docs/edge.md): the stream
 * `DOPPEL_EDGE_LOGS` in the cloud's domain holds no subjects of its own; every thick edge adds its
 * `DOPPEL_EDGE_LOG` as a source (edge-log.ts), so JetStream copies each edge's batches across the
 * leaf link in order and resumes after an outage where it stopped. A durable consumer feeds them,
 * one at a time, to the {@link Replicator}, the only writer of edge twins in the cloud's store:
 * applied and duplicate batches are acknowledged, a gap is redelivered later, a malformed batch or
 * a conflicting twin is terminated and counted (never merged). A batch whose `edge` field, subject
 * and source (the hub's `Nats-Stream-Source` stamp) do not name one edge is *forged*
 * (batch-origin.ts): terminated, counted and logged with the names, never handed to the replicator. The counts, per edge, answer
 * `doppel edge status` on `doppel.edge-replication.status` (replication-status.ts).
 */
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { InvalidArgument } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type { TwinChange } from "../core/records.ts";
import { edgeOfSource } from "../devices/edge/durable-source.ts";
import { answerEach } from "../devices/edge/respond-or-log.ts";
import { streamInfoIfAny } from "../devices/ingress/stream-config.ts";
import type { Logger } from "../observability/logger.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { edgeSourceHash, forgery, STREAM_SOURCE_HEADER, sourceHashOf } from "./batch-origin.ts";
import { CLOUD_LOGS_STREAM } from "./edge-log.ts";
import { decodeBatch, edgeOfLogSubject } from "./replicated-batch.ts";
import {
  type EdgeReplicationCounts,
  REPLICATION_STATUS_SUBJECT,
  type ReplicationCounts,
  type ReplicationStatus,
  zeroCounts,
} from "./replication-status.ts";
import { type ApplyOutcome, Replicator } from "./replicator.ts";

export type { ReplicationCounts } from "./replication-status.ts";

export const REPLICATOR_CONSUMER = "doppel-edge-replicator";

export interface CloudReplicationOptions {
  readonly shardOf: (ref: TwinRef) => number;
  readonly onApplied?: (change: TwinChange) => void;
  readonly logger: Logger;
  /** Delay before a gap or a failed apply is redelivered. */
  readonly retryMs?: number;
  /** The node's name in its status answers. */
  readonly node?: string;
  /** The clock of `lastSyncAt` (epoch ms). */
  readonly now?: () => number;
}

export class CloudReplication {
  /** What the replicator did with the batches it took, over all edges. */
  readonly counts: ReplicationCounts = zeroCounts();
  /**
   * The same per edge (the edge a batch names; for a malformed or forged one the edge whose source
   * it came through, else its subject's), with the last sync.
   */
  readonly #edges = new Map<string, EdgeReplicationCounts>();
  #statusSub: Subscription | undefined;
  readonly #nc: NatsConnection;
  readonly #replicator: Replicator;
  readonly #options: CloudReplicationOptions;
  #running: Promise<void> | undefined;
  #close: (() => void) | undefined;
  /** Edge sources of the cloud's stream by API hash (batch-origin.ts), to name where a batch came from. */
  readonly #sourceEdges = new Map<string, string>();
  /** Hashes no source had when last looked for, with when (epoch ms). */
  readonly #unknownHashes = new Map<string, number>();

  constructor(nc: NatsConnection, store: EventStore, options: CloudReplicationOptions) {
    this.#nc = nc;
    this.#options = options;
    this.#replicator = new Replicator(store, {
      shardOf: options.shardOf,
      ...(options.onApplied ? { onApplied: options.onApplied } : {}),
    });
  }

  /** Creates the stream and the consumer (if missing) and starts applying. */
  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.#nc);
    if (!(await streamInfoIfAny(jsm, CLOUD_LOGS_STREAM))) {
      // Sources only: a stream needs a subject, so it takes its own name (nothing publishes there).
      await jsm.streams.add({ name: CLOUD_LOGS_STREAM, subjects: [`doppel.edge-logs.${CLOUD_LOGS_STREAM}`] });
    }
    await jsm.consumers.add(CLOUD_LOGS_STREAM, {
      durable_name: REPLICATOR_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: 256,
    });
    this.#statusSub = this.#nc.subscribe(REPLICATION_STATUS_SUBJECT, {
      callback: answerEach(this.#options.logger, "edge replication status", () => this.status),
    });
    const consumer = await jetstream(this.#nc).consumers.get(CLOUD_LOGS_STREAM, REPLICATOR_CONSUMER);
    const messages = await consumer.consume({ max_messages: 64 });
    this.#close = () => void messages.close();
    this.#running = (async () => {
      for await (const message of messages) await this.#handle(message);
    })().catch((error: unknown) =>
      this.#options.logger.warn({ err: String(error) }, "edge replication stopped"),
    );
  }

  /** Per edge: what the replicator did with its batches, and when it last took one the cloud then held. */
  get status(): ReplicationStatus {
    return { node: this.#options.node, edges: Object.fromEntries(this.#edges) };
  }

  #count(edge: string | undefined, outcome: keyof ReplicationCounts): void {
    this.counts[outcome]++;
    const name = edge ?? "?";
    let counts = this.#edges.get(name);
    if (!counts) this.#edges.set(name, (counts = { ...zeroCounts(), lastSyncAt: undefined }));
    counts[outcome]++;
    if (outcome === "applied" || outcome === "duplicate")
      counts.lastSyncAt = (this.#options.now ?? Date.now)();
  }

  /**
   * The edge whose source has API hash `hash`, from the cloud stream's sources: read again for a
   * hash not known yet, at most once a second per hash (and at most 1,000 unknown hashes kept).
   */
  async #edgeOfHash(hash: string | undefined): Promise<string | undefined> {
    if (hash === undefined) return undefined;
    const known = this.#sourceEdges.get(hash);
    if (known !== undefined) return known;
    const now = Date.now();
    if (now - (this.#unknownHashes.get(hash) ?? 0) < 1000) return undefined;
    if (this.#unknownHashes.size >= 1000) this.#unknownHashes.clear();
    this.#unknownHashes.set(hash, now);
    const info = await streamInfoIfAny(await jetstreamManager(this.#nc), CLOUD_LOGS_STREAM).catch(
      () => undefined,
    );
    for (const source of info?.config.sources ?? []) {
      const edge = edgeOfSource(source);
      if (edge) this.#sourceEdges.set(edgeSourceHash(edge), edge);
    }
    return this.#sourceEdges.get(hash);
  }

  async #handle(message: JsMsg): Promise<void> {
    const retryMs = this.#options.retryMs ?? 1000;
    const sourceHeader = message.headers?.get(STREAM_SOURCE_HEADER);
    // Counted against the edge whose source the hub took it from, when known (an edge cannot
    // forge that), else the edge its subject names.
    const through = await this.#edgeOfHash(sourceHashOf(sourceHeader));
    let edge = through ?? edgeOfLogSubject(message.subject);
    let outcome: ApplyOutcome;
    try {
      const batch = decodeBatch(message.data);
      const forged = forgery(batch.edge, message.subject, sourceHeader, through);
      if (forged) {
        this.#count(edge, "forged");
        this.#options.logger.warn(
          {
            subject: message.subject,
            named: forged.named,
            subjectEdge: forged.subjectEdge,
            through,
            reason: forged.reason,
          },
          "edge replication: forged batch refused",
        );
        message.term();
        return;
      }
      edge = batch.edge;
      outcome = await this.#replicator.apply(batch);
    } catch (error) {
      const malformed = error instanceof InvalidArgument;
      this.#count(edge, malformed ? "malformed" : "failed");
      this.#options.logger.warn(
        { subject: message.subject, err: String(error) },
        "edge replication: batch not applied",
      );
      if (malformed) message.term();
      else message.nak(retryMs);
      return;
    }
    this.#count(edge, outcome.kind);
    if (outcome.kind === "gap") {
      message.nak(retryMs);
    } else if (outcome.kind === "conflict") {
      this.#options.logger.warn(
        { subject: message.subject, reason: outcome.reason },
        "edge replication: conflict",
      );
      message.term();
    } else {
      message.ack();
    }
  }

  async stop(): Promise<void> {
    this.#statusSub?.unsubscribe();
    this.#close?.();
    await this.#running;
  }
}
