/**
 * The edge's side of thick-edge replication (docs/edge.md). The edge's node runs the edge twins
 * on its own store; this publishes each of their committed batches (replicated-batch.ts) into the
 * stream `DOPPEL_EDGE_LOG` of the edge's JetStream domain, in log order per twin, with the message
 * id `type/id/<last seq>` (a republished batch is stored once), and has the cloud register that
 * stream as a source of its `DOPPEL_EDGE_LOGS` (`$JS.<edge>.API`, asked across the leaf link:
 * devices/edge/source-registration.ts; the edge does not touch the cloud's streams; asked every
 * tick, so a source the cloud's stream lost is put back) once a cloud node answers, through a durable consumer at the edge (durable-source.ts, as the thin edge's
 * stream), so the source resumes promptly after an outage, where it stopped; batches pile up at
 * the edge meanwhile.
 *
 * The store is the truth, not the change feed: a change only marks its twin dirty, and the
 * publisher sends what the store holds after the last seq it published. At start it learns that
 * seq per twin from the stream's last message on the twin's subject, so a batch committed but not
 * published before a crash is published after the restart (no gap).
 *
 * It answers `doppel edge status` on `doppel.edge.<edge>.log-status` (replication-status.ts).
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { nanos } from "@nats-io/nats-core";
import { DoppelError } from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { TwinChange } from "../core/records.ts";
import { type DurableEdgeSource, ensureDurableSourceConsumer } from "../devices/edge/durable-source.ts";
import { answerEach } from "../devices/edge/respond-or-log.ts";
import { requestSourceRegistration } from "../devices/edge/source-registration.ts";
import { isNotFound, streamInfoIfAny } from "../devices/ingress/stream-config.ts";
import type { Logger } from "../observability/logger.ts";
import type { EventStore } from "../persistence/event-store.ts";
import {
  batchMessageId,
  decodeBatch,
  edgeLogSubject,
  edgeLogSubjects,
  encodeBatch,
  type ReplicatedBatch,
} from "./replicated-batch.ts";
import { type EdgeLogStatus, edgeLogStatusSubject } from "./replication-status.ts";

/** The edge's log stream (edge domain) and the cloud's stream that sources every edge's. */
export const EDGE_LOG_STREAM = "DOPPEL_EDGE_LOG";
export const CLOUD_LOGS_STREAM = "DOPPEL_EDGE_LOGS";

/** Where the edge log's durable source consumer delivers (the thin edge's stream uses `doppel.edge-source.<edge>`). */
export function edgeLogDeliverSubject(edge: string): string {
  return `doppel.edge-source.${edge}.log`;
}

/** The edge's log stream as a durable source of the cloud's `DOPPEL_EDGE_LOGS` (durable-source.ts). */
export function edgeLogSource(edge: string): DurableEdgeSource {
  return { edge, stream: EDGE_LOG_STREAM, deliverSubject: edgeLogDeliverSubject(edge) };
}

export interface EdgeLogOptions {
  readonly edge: string;
  /** The twin types that run at this edge. */
  readonly types: readonly string[];
  /** How often to ask the cloud to register the log (every tick) and retry failed publishes. */
  readonly tickMs: number;
  /** Bounds of the edge's log stream (the outage it survives). */
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly logger: Logger;
}

/** What `subscribe(listener)` of the node's change feed returns: the unsubscribe. */
export type ChangeSubscription = (listener: (change: TwinChange) => void) => () => void;

export class EdgeLogPublisher {
  readonly #nc: NatsConnection;
  readonly #store: EventStore;
  readonly #options: EdgeLogOptions;
  readonly #types: ReadonlySet<string>;
  /** Per twin: the last seq published into the edge's log stream. */
  readonly #published = new Map<string, number>();
  readonly #dirty = new Map<string, TwinRef>();
  #js!: JetStreamClient;
  #local!: JetStreamManager;
  #timeoutMs = 1000;
  #registered = false;
  #publishedBatches = 0;
  #statusSub: Subscription | undefined;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pumping: Promise<void> | undefined;
  #stopped = false;

  constructor(nc: NatsConnection, store: EventStore, options: EdgeLogOptions) {
    this.#nc = nc;
    this.#store = store;
    this.#options = options;
    this.#types = new Set(options.types);
  }

  /**
   * Whether the cloud's last answer said the edge's log is a source of the cloud's logs (kept while
   * no cloud node answers: the link is down).
   */
  get registered(): boolean {
    return this.#registered;
  }

  /** Twins with batches not yet in the edge's log stream. */
  get pending(): number {
    return this.#dirty.size;
  }

  /** Batches published into the edge's log stream since start. */
  get published(): number {
    return this.#publishedBatches;
  }

  /** What `doppel edge status` asks the edge (with the log stream's last sequence). */
  async status(): Promise<EdgeLogStatus> {
    const info = await streamInfoIfAny(this.#local, EDGE_LOG_STREAM);
    return {
      edge: this.#options.edge,
      registered: this.#registered,
      published: this.#publishedBatches,
      pending: this.#dirty.size,
      stored: info?.state.last_seq ?? 0,
    };
  }

  /**
   * Creates the edge's log stream, learns what it holds of every edge twin in the store, starts
   * following `subscribe` (the node's change feed) and publishing. Fails when the edge's own
   * JetStream cannot be reached.
   */
  async start(subscribe: ChangeSubscription): Promise<void> {
    const { edge, tickMs, maxAgeMs, maxBytes } = this.#options;
    const timeout = Math.max(1000, tickMs);
    this.#timeoutMs = timeout;
    this.#js = jetstream(this.#nc, { timeout });
    this.#local = await jetstreamManager(this.#nc, { timeout });
    if (!(await streamInfoIfAny(this.#local, EDGE_LOG_STREAM))) {
      await this.#local.streams.add({
        name: EDGE_LOG_STREAM,
        subjects: [edgeLogSubjects(edge)],
        max_age: nanos(maxAgeMs),
        max_bytes: maxBytes,
        duplicate_window: nanos(120_000),
      });
    }
    await ensureDurableSourceConsumer(this.#local, edgeLogSource(edge));
    this.#statusSub = this.#nc.subscribe(edgeLogStatusSubject(edge), {
      callback: answerEach(this.#options.logger, "edge log status", () => this.status()),
    });
    this.#unsubscribe = subscribe((change) => {
      if (this.#types.has(change.ref.type)) this.#dirty.set(refKey(change.ref), change.ref);
      this.#kick();
    });
    for (const type of this.#types) {
      let pageToken: string | undefined;
      do {
        const page = await this.#store.queryViews(type, { limit: 500, ...(pageToken ? { pageToken } : {}) });
        for (const view of page.views) {
          const ref = { type: view.type, id: view.id };
          const published = await this.#lastPublished(ref);
          this.#published.set(refKey(ref), published);
          if (view.version > published) this.#dirty.set(refKey(ref), ref);
        }
        pageToken = page.nextPageToken;
      } while (pageToken);
    }
    this.#kick();
    this.#schedule();
  }

  async #lastPublished(ref: TwinRef): Promise<number> {
    try {
      const message = await this.#local.streams.getMessage(EDGE_LOG_STREAM, {
        last_by_subj: edgeLogSubject(this.#options.edge, ref),
      });
      return message ? decodeBatch(message.data).view.version : 0;
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw error;
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await this.#register();
      this.#kick();
      this.#schedule();
    }, this.#options.tickMs);
  }

  /**
   * Asks the cloud every tick, as the thin edge does (EdgeForwarder): a source lost to a concurrent
   * update of the cloud's stream (two registrars updating different edges at once) is put back.
   */
  async #register(): Promise<void> {
    const { edge, logger } = this.#options;
    try {
      // A source an older edge node registered (ephemeral) is replaced by the durable one.
      const position = await requestSourceRegistration(
        this.#nc,
        edge,
        { kind: "thick", stream: EDGE_LOG_STREAM },
        this.#timeoutMs,
      );
      if (position.changed)
        logger.info({ edge }, "edge log: registered as a durable source of the cloud's edge logs");
      this.#registered = true;
    } catch (error) {
      // Refused (no cloud node replicates yet, busy) or a bad reply: not registered, asked again
      // next tick. The link is down: no answer, `registered` stays as the last one said.
      if (error instanceof DoppelError) {
        this.#registered = false;
        logger.debug({ edge, err: error.message }, "edge log: the cloud did not register the log");
      }
    }
  }

  #kick(): void {
    if (this.#pumping || this.#stopped) return;
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined;
    });
  }

  /** Publishes every dirty twin's unpublished events, one twin at a time (order per twin). */
  async #pump(): Promise<void> {
    while (!this.#stopped) {
      const next = this.#dirty.entries().next();
      if (next.done) return;
      const [key, ref] = next.value;
      this.#dirty.delete(key);
      try {
        await this.#publish(key, ref);
      } catch (error) {
        // Kept dirty; retried on the next tick (the edge's stream full or unreachable).
        this.#dirty.set(key, ref);
        this.#options.logger.warn({ twin: key, err: String(error) }, "edge log: publish failed");
        return;
      }
    }
  }

  async #publish(key: string, ref: TwinRef): Promise<void> {
    const after = this.#published.get(key) ?? 0;
    // The view first, then the events up to it: a commit landing in between is left for the next round.
    const view = await this.#store.readView(ref);
    if (!view || view.version <= after) return;
    const events = (await this.#store.readEvents(ref, after)).filter((e) => e.seq <= view.version);
    if (events.length === 0 || events.at(-1)!.seq !== view.version) {
      this.#dirty.set(key, ref);
      return;
    }
    const batch: ReplicatedBatch = { edge: this.#options.edge, ref, events, view };
    await this.#js.publish(edgeLogSubject(this.#options.edge, ref), encodeBatch(batch), {
      msgID: batchMessageId(batch),
    });
    this.#published.set(key, view.version);
    this.#publishedBatches++;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#unsubscribe?.();
    this.#statusSub?.unsubscribe();
    await this.#pumping?.catch(() => undefined);
  }
}
