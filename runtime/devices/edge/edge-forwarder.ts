/**
 * The edge node's side of store-and-forward (see edge-stream.ts): it creates the edge stream in
 * the edge's JetStream domain and its source consumer, and, on every tick, asks a cloud node across
 * the leaf link to source it (source-registration.ts: the cloud adds or repairs the source and
 * answers with how far it has stored; the edge never touches the cloud's streams), trims what is
 * forwarded (so the edge stream holds only the backlog), counts what the edge stream dropped
 * before it was forwarded (`discard: old`, `maxAge`), and answers status requests on
 * `doppel.edge.<name>.status` (what `doppel edge status` shows).
 *
 * The link is "up" while a cloud node answers through the leaf connection (a refusal is an answer
 * too: shown as `sourceError`); a tick that finds no route to one marks the link down
 * (link-state.ts: a few timed-out ticks in a row do too) and keeps everything buffered.
 */
import { type JetStreamManager, jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { DoppelError, FailedPrecondition } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { ensureDurableSourceConsumer } from "./durable-source.ts";
import { type EdgeStreamSettings, edgeSourceDeliverSubject, ensureEdgeStream } from "./edge-stream.ts";
import { LinkState, probeOfError } from "./link-state.ts";
import { answerEach } from "./respond-or-log.ts";
import { requestSourceRegistration } from "./source-registration.ts";

/** Subject on which an edge node answers status requests. */
export function edgeStatusSubject(edge: string): string {
  return `doppel.edge.${edge}.status`;
}

/** An edge's store-and-forward state, as its edge node sees it. */
export interface EdgeStatus {
  readonly edge: string;
  /** Whether the leaf link is up: the hub's JetStream answered (link-state.ts). */
  readonly linkUp: boolean;
  /** Reports and telemetry stored at the edge and not yet confirmed stored by the cloud. */
  readonly backlog: number;
  /** Bytes the edge stream holds (the backlog, once trimmed). */
  readonly backlogBytes: number;
  /** The edge stream's limit (`maxBytes`) and what happens when it is reached. */
  readonly maxBytes: number;
  readonly discard: "new" | "old";
  /** Highest edge stream sequence stored at the edge. */
  readonly stored: number;
  /** Highest edge stream sequence the cloud confirmed stored. */
  readonly forwarded: number;
  /** Messages the edge stream dropped before they were forwarded (`discard: old`, `maxAge`). */
  readonly dropped: number;
  /** When the hub last confirmed the forwarded position (epoch ms), if ever. */
  readonly lastSyncAt: number | undefined;
  /** The hub's error for this source, or the cloud's refusal to register it, when there is one. */
  readonly sourceError: string | undefined;
}

export interface EdgeForwarderOptions {
  /** The edge's name: its JetStream domain and the token of its status subject. */
  readonly edge: string;
  /** The cloud's JetStream domain. */
  readonly hubDomain: string;
  readonly stream: EdgeStreamSettings;
  /** How often to read the hub's position and trim. */
  readonly tickMs: number;
  readonly now: () => number;
  readonly logger: Logger;
  /** Called with the new status after every tick (the edge node resyncs desired state when the link returns). */
  readonly onStatus?: (status: EdgeStatus) => void;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class EdgeForwarder {
  readonly #nc: NatsConnection;
  readonly #options: EdgeForwarderOptions;
  #local!: JetStreamManager;
  #timeoutMs = 1000;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #status: EdgeStatus;
  readonly #link = new LinkState();
  /** Edge sequences up to here are gone from the edge stream (forwarded and trimmed, or dropped). */
  #goneUpTo = 0;
  #statusSub: Subscription | undefined;
  #stopped = false;

  constructor(nc: NatsConnection, options: EdgeForwarderOptions) {
    this.#nc = nc;
    this.#options = options;
    this.#status = {
      edge: options.edge,
      linkUp: false,
      backlog: 0,
      backlogBytes: 0,
      maxBytes: options.stream.maxBytes,
      discard: options.stream.discard,
      stored: 0,
      forwarded: 0,
      dropped: 0,
      lastSyncAt: undefined,
      sourceError: undefined,
    };
  }

  /** The latest status (updated on every tick). */
  get status(): EdgeStatus {
    return this.#status;
  }

  /**
   * Checks that the server is the edge's leaf (JetStream domain = the edge's name; otherwise
   * `FailedPrecondition`), creates the edge stream and starts ticking. The link may be down: registration at the hub
   * happens on the first tick that reaches it. Fails if the edge's own JetStream is unavailable.
   */
  async start(): Promise<void> {
    this.#timeoutMs = Math.max(1000, this.#options.tickMs);
    this.#local = await jetstreamManager(this.#nc, { timeout: this.#timeoutMs });
    const { domain } = await this.#local.getAccountInfo();
    if (domain !== this.#options.edge) {
      throw new FailedPrecondition(
        `the NATS server is not the leaf server of edge ${this.#options.edge}: its JetStream domain is ` +
          `${domain ?? "(none)"}, not ${this.#options.edge} (write its configuration with doppel edge leaf-config)`,
      );
    }
    await ensureEdgeStream(this.#local, this.#options.stream);
    await ensureDurableSourceConsumer(this.#local, {
      edge: this.#options.edge,
      stream: this.#options.stream.name,
      deliverSubject: edgeSourceDeliverSubject(this.#options.edge),
    });
    this.#statusSub = this.#nc.subscribe(edgeStatusSubject(this.#options.edge), {
      callback: answerEach(this.#options.logger, "edge status", () => this.#status),
    });
    await this.tick();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#ticking = this.tick().finally(() => this.#schedule());
    }, this.#options.tickMs);
  }

  /** One round: read the edge stream, ask the cloud to source it (its answer is the position), trim, count drops. */
  async tick(): Promise<void> {
    const { edge, hubDomain, stream, logger, now } = this.#options;
    let local: StreamInfo;
    try {
      local = await this.#local.streams.info(stream.name);
    } catch (error) {
      logger.warn({ err: errorMessage(error) }, "edge: cannot read the edge stream");
      return;
    }
    let forwarded = this.#status.forwarded;
    let linkUp = false;
    let lastSyncAt = this.#status.lastSyncAt;
    let sourceError: string | undefined;
    try {
      const position = await requestSourceRegistration(
        this.#nc,
        edge,
        { kind: "thin", stream: stream.name },
        this.#timeoutMs,
      );
      if (position.changed)
        logger.info({ edge, hubDomain }, "edge: registered as a source of the cloud's ingress stream");
      linkUp = this.#link.observe("answered");
      lastSyncAt = now();
      sourceError = position.sourceError;
      forwarded = Math.max(forwarded, position.seq);
    } catch (error) {
      if (error instanceof DoppelError) {
        // The cloud answered and refused (no ingress stream yet, busy, ...), or answered with a reply
        // that is not one (parseRegistrationReply): the link is up, nothing trimmed.
        linkUp = this.#link.observe("answered");
        sourceError = error.message;
        if (this.#status.sourceError !== sourceError)
          logger.warn({ edge, err: error.message }, "edge: the cloud refused to source the edge stream");
      } else {
        linkUp = this.#link.observe(probeOfError(error));
        if (this.#status.linkUp && !linkUp)
          logger.warn({ edge, err: errorMessage(error) }, "edge: the cloud is unreachable");
        else if (linkUp)
          logger.info({ edge, timeouts: this.#link.timeouts }, "edge: the cloud did not answer in time");
      }
    }
    // Trim what the cloud stored: the edge stream keeps only the backlog.
    if (forwarded > this.#goneUpTo && local.state.messages > 0 && forwarded >= local.state.first_seq) {
      try {
        await this.#local.streams.purge(stream.name, { seq: forwarded + 1 });
        local = await this.#local.streams.info(stream.name);
      } catch (error) {
        logger.warn({ err: errorMessage(error) }, "edge: cannot trim the edge stream");
      }
    }
    // Sequences below first_seq are gone; those gone without being forwarded were dropped.
    const gone = local.state.first_seq - 1;
    let dropped = this.#status.dropped;
    if (gone > this.#goneUpTo) {
      const lost = gone - Math.max(this.#goneUpTo, forwarded);
      if (lost > 0) {
        dropped += lost;
        logger.warn({ edge, lost }, "edge: reports dropped before they were forwarded");
      }
      this.#goneUpTo = gone;
    }
    const stored = local.state.last_seq;
    this.#status = {
      ...this.#status,
      linkUp,
      backlog: Math.max(0, stored - Math.max(forwarded, gone)),
      backlogBytes: local.state.bytes,
      stored,
      forwarded,
      dropped,
      lastSyncAt,
      sourceError,
    };
    this.#options.onStatus?.(this.#status);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#ticking?.catch(() => undefined);
    this.#statusSub?.unsubscribe();
  }
}
