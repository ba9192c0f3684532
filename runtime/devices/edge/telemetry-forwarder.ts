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
 * tests) has passed their end plus the grace. Open windows live in memory: a restart of the edge
 * node forwards the windows open at that moment with only the samples that came after it.
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
}

/** What the telemetry path has done since the edge node started. */
export interface TelemetryStats {
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
}

const CONSUMER = "doppel-edge-telemetry";

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
  readonly stats: TelemetryStats = { received: 0, forwarded: 0, windows: 0, invalid: 0, late: 0 };

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
      ack_wait: 30_000_000_000,
      max_ack_pending: 1000,
    });
    const consumer = await this.#js.consumers.get(this.#options.raw.name, CONSUMER);
    const messages = await consumer.consume({ max_messages: 256 });
    this.#messages = messages;
    this.#loop = (async () => {
      for await (const msg of messages) await this.#exclusive(() => this.#take(msg));
    })().catch((error: unknown) =>
      this.#options.logger.warn({ err: error }, "edge: telemetry consumer stopped"),
    );
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

  async #take(msg: JsMsg): Promise<void> {
    const { reducer, limits, logger } = this.#options;
    this.stats.received++;
    let ref: ReturnType<typeof parseDeviceSubject>["ref"];
    let samples: RawSample[];
    try {
      ref = parseDeviceSubject(msg.subject).ref;
      const storedAt = Math.floor(msg.info.timestampNanos / 1_000_000);
      samples = parseTelemetry(decodeTelemetry(msg.data, encodingOf(contentType(msg)), limits), storedAt);
    } catch (error) {
      this.stats.invalid++;
      logger.warn({ subject: msg.subject, err: error }, "edge: raw telemetry that does not decode stays raw");
      msg.ack();
      return;
    }
    const plan = reducer.plan(ref, samples);
    if (plan.forward.length > 0) {
      const id = msg.headers?.get("Nats-Msg-Id") || `raw:${msg.info.streamSequence}`;
      try {
        await this.#publish(forwardSubject(ref), plan.forward, id);
      } catch (error) {
        logger.warn({ err: error }, "edge: cannot forward telemetry into the edge stream; retrying");
        msg.nak(1000);
        return;
      }
      this.stats.forwarded++;
    }
    reducer.apply(plan);
    this.stats.late += plan.late;
    msg.ack();
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
