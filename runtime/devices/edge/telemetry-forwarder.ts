/**
 * The edge node's telemetry path (docs/edge.md, "Edge analytics"): devices' telemetry is stored
 * in the raw stream at the edge (`DOPPEL_EDGE_RAW`; its PubAck is the device's ack, it keeps raw
 * samples for its retention); this takes each raw message (durable consumer, explicit acks), lets
 * the {@link TelemetryReducer} decide what goes upstream, and publishes that into the edge stream
 * on `doppel.fwd.<type>.<id>.telemetry`, from where the cloud's source takes it like a report. A
 * raw message is acknowledged only after what it forwards is stored in the edge stream; when that
 * fails (the edge stream is full with `discard: new`) it is delivered again later.
 *
 * Closed windows are forwarded on every tick, when `now()` (the node's clock, a manual one in
 * tests) has passed their end plus the grace. Open windows live in memory; at start the edge node
 * rebuilds them from the raw stream: the raw messages already acknowledged (up to the consumer's
 * ack floor) and stored within `replayMs` are folded again into the windows still open, so a
 * restart neither loses a window's earlier samples nor forwards a partial aggregate. Windows
 * whose end plus grace passed while the node was down are not forwarded; their samples stay raw.
 *
 * **Dropped before forwarded.** The raw stream keeps its newest messages within its limits
 * (`maxBytes`, `maxAge`); during a long outage with the edge stream full, raw messages not yet
 * forwarded may be removed. Every tick counts them ({@link TelemetryStats.dropped}): the raw
 * sequences gone from the stream (below its first) that were not settled, i.e. neither
 * acknowledged by this node nor below the consumer's ack floor when it started. A message counted
 * so is not forwarded should it still be delivered (from the client's buffer, or a late
 * redelivery), so every raw message is forwarded or counted, never both.
 *
 * On a thick edge the raw stream also takes the telemetry of the twins that run at the edge
 * (`local`): each of their raw messages is first recorded in the edge node's own telemetry store
 * (keyed by message, so a redelivery stores its samples once), then reduced and forwarded like
 * any other, so the edge's `GetTelemetry` has the raw samples and the cloud's the reduced ones.
 */
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import type { CompiledReduction } from "../../core/edge-telemetry.ts";
import type { TwinRef } from "../../core/ids.ts";
import type { JsonLimits } from "../../core/json.ts";
import type { Logger } from "../../observability/logger.ts";
import { parseTelemetry } from "../ingress/device-ingress.ts";
import { CONTENT_TYPE, decodeTelemetry, encodingOf, JSON_TYPE } from "../payload-codec.ts";
import { encodeJson, parseDeviceSubject } from "../protocol.ts";
import { ensureRawStream, forwardSubject, type RawStreamSettings } from "./edge-stream.ts";
import type { RawSample, TelemetryReducer } from "./telemetry-reducer.ts";

export interface TelemetryForwarderOptions {
  readonly raw: RawStreamSettings;
  readonly reducer: TelemetryReducer;
  readonly limits: JsonLimits;
  readonly now: () => number;
  readonly logger: Logger;
  /**
   * How far back (wall-clock ms of the raw stream's storage times) a start looks for samples of
   * open windows: the longest window plus the grace plus the consumer's ack wait; 0: no windows.
   */
  readonly replayMs: number;
  /** A thick edge's twins: their raw telemetry is recorded at the edge before it is reduced. */
  readonly local?: LocalTelemetry;
}

/** Where a thick edge records the raw telemetry of the twins it runs (its node's telemetry store). */
export interface LocalTelemetry {
  readonly types: ReadonlySet<string>;
  /** Stores the samples (each with its `key`); rejects when they are not stored (the message is delivered again). */
  record(ref: TwinRef, samples: readonly (RawSample & { readonly key: string })[]): Promise<void>;
}

/** What the telemetry path has done since the edge node started. */
export type TelemetryStats = {
  /** Raw telemetry messages taken from the raw stream. */
  received: number;
  /** Messages forwarded upstream (raw samples passed on, and window aggregates). */
  forwarded: number;
  /** Window aggregates forwarded. */
  windows: number;
  /** Raw messages that did not decode (kept raw, not forwarded). */
  invalid: number;
  /** Windowed samples that came after their window was forwarded (kept raw, not forwarded). */
  late: number;
  /** Values taken before the last restart, folded back into windows still open at start. */
  refolded: number;
  /** Raw messages of the edge's own twins recorded in its telemetry store (a thick edge). */
  recorded: number;
  /** Raw messages removed from the raw stream (its limits) before they were forwarded. */
  dropped: number;
};

const CONSUMER = "doppel-edge-telemetry";
/** How long a delivered raw message may stay unacknowledged before it is delivered again. */
const ACK_WAIT_MS = 30_000;

/**
 * How far back a start replays raw telemetry for the open windows: the longest window of any
 * type, its grace, and the consumer's ack wait (a message may wait that long before its ack); 0
 * when no type declares a window.
 */
export function replayWindowMs(
  reductions: ReadonlyMap<string, ReadonlyMap<string, CompiledReduction>>,
  graceMs: number,
): number {
  let longest = 0;
  for (const metrics of reductions.values())
    for (const reduction of metrics.values())
      if (reduction.kind === "window") longest = Math.max(longest, reduction.everyMs);
  return longest > 0 ? longest + graceMs + ACK_WAIT_MS : 0;
}

/** A raw message's `Content-Type`, as the codec reads headers. */
function contentType(msg: JsMsg): Map<string, string> | undefined {
  const type = msg.headers?.get(CONTENT_TYPE);
  return type ? new Map([[CONTENT_TYPE, type]]) : undefined;
}

export class TelemetryForwarder {
  readonly #nc: NatsConnection;
  readonly #options: TelemetryForwarderOptions;
  #js!: JetStreamClient;
  #jsm!: JetStreamManager;
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  readonly stats: TelemetryStats = {
    received: 0,
    forwarded: 0,
    windows: 0,
    invalid: 0,
    late: 0,
    refolded: 0,
    recorded: 0,
    dropped: 0,
  };
  /** Every raw sequence up to here is settled: acknowledged, or gone from the stream and counted as dropped. */
  #settledThrough = 0;
  /** Raw sequences above it that this node acknowledged. */
  readonly #settledAbove = new Set<number>();

  constructor(nc: NatsConnection, options: TelemetryForwarderOptions) {
    this.#nc = nc;
    this.#options = options;
  }

  /** Creates the raw stream and its consumer and starts taking raw telemetry. */
  async start(): Promise<void> {
    this.#js = jetstream(this.#nc);
    this.#jsm = await jetstreamManager(this.#nc);
    await ensureRawStream(this.#jsm, this.#options.raw);
    await this.#jsm.consumers.add(this.#options.raw.name, {
      durable_name: CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ACK_WAIT_MS * 1_000_000,
      max_ack_pending: 1000,
    });
    this.#settledThrough = (
      await this.#jsm.consumers.info(this.#options.raw.name, CONSUMER)
    ).ack_floor.stream_seq;
    await this.#refold();
    const consumer = await this.#js.consumers.get(this.#options.raw.name, CONSUMER);
    const messages = await consumer.consume({ max_messages: 256 });
    this.#messages = messages;
    this.#loop = (async () => {
      for await (const msg of messages) await this.#exclusive(() => this.#take(msg));
    })().catch((error: unknown) =>
      this.#options.logger.warn({ err: error }, "edge: telemetry consumer stopped"),
    );
  }

  /**
   * Rebuilds the windows open at start from the raw messages acknowledged before it (up to the
   * durable consumer's ack floor; those after it are delivered again anyway), read with an
   * ordered consumer from `replayMs` ago; then samples for windows already due count as late.
   */
  async #refold(): Promise<void> {
    const { raw, reducer, replayMs, now } = this.#options;
    if (replayMs <= 0) return;
    const floor = (await this.#jsm.consumers.info(raw.name, CONSUMER)).ack_floor.stream_seq;
    const at = now();
    if (floor > 0) {
      const ordered = await this.#js.consumers.get(raw.name, {
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: new Date(Date.now() - replayMs).toISOString(),
      });
      for (let done = false; !done; ) {
        const batch = await ordered.fetch({ max_messages: 256, expires: 2000 });
        let taken = 0;
        for await (const msg of batch) {
          taken++;
          if (msg.seq > floor) {
            done = true;
            continue;
          }
          const decoded = this.#decode(msg);
          if (decoded) this.stats.refolded += reducer.refold(decoded.ref, decoded.samples, at);
          if (msg.seq === floor || msg.info.pending === 0) done = true;
        }
        if (taken === 0) done = true;
      }
    }
    reducer.closedThrough(at);
  }

  /** A raw message's twin and samples, or undefined (logged) when it does not decode. */
  #decode(msg: JsMsg): { ref: TwinRef; samples: RawSample[] } | undefined {
    try {
      const ref = parseDeviceSubject(msg.subject).ref;
      const storedAt = Math.floor(msg.info.timestampNanos / 1_000_000);
      const samples = parseTelemetry(
        decodeTelemetry(msg.data, encodingOf(contentType(msg)), this.#options.limits),
        storedAt,
      );
      return { ref, samples };
    } catch (error) {
      this.#options.logger.warn(
        { subject: msg.subject, err: error },
        "edge: raw telemetry that does not decode stays raw",
      );
      return undefined;
    }
  }

  /** Runs `work` alone: raw messages and window closing never interleave. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(work, work);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  async #publish(subject: string, samples: readonly RawSample[], messageId: string): Promise<void> {
    const h = natsHeaders();
    h.set(CONTENT_TYPE, JSON_TYPE);
    await this.#js.publish(subject, encodeJson({ samples }), { msgID: messageId, headers: h });
  }

  /** Acknowledges `msg`: it is settled. */
  #ack(msg: JsMsg): void {
    msg.ack();
    if (msg.seq > this.#settledThrough) this.#settledAbove.add(msg.seq);
    this.#advanceSettled();
  }

  #advanceSettled(): void {
    while (this.#settledAbove.delete(this.#settledThrough + 1)) this.#settledThrough++;
  }

  /** Leaves `msg` for a redelivery a second later. */
  #retry(msg: JsMsg): void {
    msg.nak(1000);
  }

  async #take(msg: JsMsg): Promise<void> {
    const { reducer, logger } = this.#options;
    if (msg.seq <= this.#settledThrough || this.#settledAbove.has(msg.seq)) {
      // Acknowledged before (a redelivery), or gone from the stream and counted as dropped.
      msg.ack();
      return;
    }
    this.stats.received++;
    const decoded = this.#decode(msg);
    if (!decoded) {
      this.stats.invalid++;
      this.#ack(msg);
      return;
    }
    const { ref, samples } = decoded;
    const id = msg.headers?.get("Nats-Msg-Id") || `raw:${msg.info.streamSequence}`;
    const local = this.#options.local;
    if (local?.types.has(ref.type)) {
      try {
        await local.record(
          ref,
          samples.map((sample, i) => ({ ...sample, key: `${id}/${i}` })),
        );
      } catch (error) {
        logger.warn({ err: error, twin: `${ref.type}/${ref.id}` }, "edge: cannot record telemetry; retrying");
        this.#retry(msg);
        return;
      }
      this.stats.recorded++;
    }
    const plan = reducer.plan(ref, samples);
    if (plan.forward.length > 0) {
      try {
        await this.#publish(forwardSubject(ref), plan.forward, id);
      } catch (error) {
        logger.warn({ err: error }, "edge: cannot forward telemetry into the edge stream; retrying");
        this.#retry(msg);
        return;
      }
      this.stats.forwarded++;
    }
    reducer.apply(plan);
    this.stats.late += plan.late;
    this.#ack(msg);
  }

  /**
   * Counts the raw messages this node could not forward that the raw stream has removed since the
   * last call (see the module comment). Run on every tick.
   */
  countDropped(): Promise<void> {
    return this.#exclusive(async () => {
      const info = await this.#jsm.streams.info(this.#options.raw.name);
      const gone = info.state.first_seq - 1;
      let lost = 0;
      for (; this.#settledThrough < gone; this.#settledThrough++) {
        if (!this.#settledAbove.delete(this.#settledThrough + 1)) lost++;
      }
      this.#advanceSettled();
      this.stats.dropped += lost;
      if (lost > 0)
        this.#options.logger.warn(
          { lost, raw: this.#options.raw.name },
          "edge: raw telemetry removed before it was forwarded",
        );
    });
  }

  /** Forwards every window due on the clock. Resolves when done; a window that fails stays for the next tick. */
  closeDue(): Promise<void> {
    return this.#exclusive(async () => {
      const { reducer, now, logger } = this.#options;
      const at = now();
      let failed = false;
      for (const window of reducer.due(at)) {
        try {
          await this.#publish(forwardSubject(window.ref), [window.sample], window.messageId);
        } catch (error) {
          logger.warn({ err: error }, "edge: cannot forward a telemetry window; retrying");
          failed = true;
          break;
        }
        reducer.closed(window);
        this.stats.forwarded++;
        this.stats.windows++;
      }
      if (!failed) reducer.closedThrough(at);
    });
  }

  async stop(): Promise<void> {
    await this.#messages?.close();
    await this.#loop;
    await this.#lock;
  }
}
