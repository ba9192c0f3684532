/**
 * Device ingress: turns messages on device subjects into twin operations. It validates the
 * subject (twin type and id), decodes and bounds the payload, and answers every malformed input
 * with an error — as a reply if the sender asked for one, else on the twin's `errors` subject —
 * counting it; a bad message never throws out of here.
 *
 * `process` is the whole job for one message and is shared by both ways messages arrive: core
 * subscriptions (in-process transport; the reply is the device's ack, sent after persistence)
 * and the durable JetStream consumer on NATS (`jetstream-ingress.ts`; the JetStream ack is sent
 * after persistence and the device's ack was the stream's PubAck).
 *
 * Payloads are JSON, or protobuf when the message says `Content-Type: application/x-protobuf`
 * (see `payload-codec.ts`). A sync request that expects no reply (MQTT devices cannot ask for one)
 * is answered on the twin's `desired` subject instead.
 */
import type {
  Headers,
  Subscription,
  Transport,
  TransportMessage,
} from "../../../cluster/transport/transport.ts";
import { type Admission, type Permit, Throttled } from "../../core/admission.ts";
import { DoppelError, InvalidArgument, NotFound } from "../../core/errors.ts";
import { isJsonObject, type JsonLimits, type JsonObject } from "../../core/json.ts";
import { present } from "../../core/present.ts";
import { principalLabel } from "../../core/principal.ts";
import type { TwinApi } from "../../core/twin-api.ts";
import type { Logger } from "../../observability/logger.ts";
import { inSpan, SpanKind, tracedParent } from "../../observability/tracing.ts";
import {
  decodeReported,
  decodeTelemetry,
  type Encoding,
  encodeDeviceState,
  encodeProtobuf,
  encodingHeaders,
  encodingOf,
} from "../payload-codec.ts";
import {
  DeviceChannel,
  deviceSubject,
  deviceSubjects,
  encodeJson,
  errorReply,
  parseDeviceSubject,
  reportStamp,
  type SyncReply,
} from "../protocol.ts";
import type { DeviceRate } from "./device-rate.ts";

/** Counters of what ingress saw (exposed as metrics). */
export interface IngressStats {
  received: number;
  applied: number;
  duplicates: number;
  /** Stamped reports dropped as stale: at or below the twin's high-water mark, or every field late. */
  stale: number;
  rejected: number;
  failed: number;
  /** Refused by admission control (the node had too much device work in flight): retried later. */
  throttled: number;
  /** Reports and telemetry dropped for being over their device's rate (`limits.deviceRate`). */
  rateLimited: number;
}

/** The outcome of processing one message: the reply body, and whether the input itself was bad. */
export interface Processed {
  readonly reply: object;
  /** True when the message was refused as invalid (it will never succeed: do not redeliver). */
  readonly rejected: boolean;
  /** True when processing failed for a reason that may pass (store down): redeliver later. */
  readonly retry: boolean;
  /** True when admission control refused it (over the node's device bound): the device is told on `.errors`. */
  readonly throttled?: boolean;
  /** The encoding of the message (replies use the same). */
  readonly encoding?: Encoding;
  /** The channel of the message, when its subject was valid. */
  readonly channel?: DeviceChannel;
}

/** Options of {@link DeviceIngress.process}. */
export interface ProcessOptions {
  /** The message's headers (`Content-Type` selects JSON or protobuf). */
  readonly headers?: Headers;
  /** Epoch ms after which the node stops waiting for the twin (the message is retried later). */
  readonly deadline?: number;
  /**
   * When the message was received for good (a JetStream message: when the stream stored it), the
   * time of telemetry samples without `at`, so a redelivery gives them the same time.
   */
  readonly receivedAt?: number;
}

const QUEUE = "doppel-ingress";

/** The audit label of a device (`device:<type>/<id>`), as `principalLabel` writes it. */
function devicePrincipal(device: string): string {
  return principalLabel({ kind: "device", id: device, scopes: ["write"] });
}

/** Validates a telemetry body (one sample or `{ samples: [...] }`, 1 to 1000) into samples; `InvalidArgument` names the bad one. */
export function parseTelemetry(
  body: JsonObject,
  now: number,
): { at: number; metrics: Record<string, number> }[] {
  const items = Array.isArray(body["samples"]) ? body["samples"] : [body];
  if (items.length === 0 || items.length > 1000)
    throw new InvalidArgument("telemetry: 1 to 1000 samples per message");
  return items.map((item, i) => {
    if (!isJsonObject(item) || !isJsonObject(item["metrics"])) {
      throw new InvalidArgument(`telemetry sample ${i}: expected { at?, metrics: { name: number } }`);
    }
    const at = item["at"];
    const when =
      at === undefined
        ? now
        : typeof at === "number"
          ? at
          : typeof at === "string"
            ? Date.parse(at)
            : Number.NaN;
    if (!Number.isSafeInteger(when) || when < 0) {
      throw new InvalidArgument(`telemetry sample ${i}: 'at' must be epoch milliseconds or an ISO date`);
    }
    const metrics = item["metrics"];
    for (const [name, value] of Object.entries(metrics)) {
      if (typeof value !== "number" || !Number.isFinite(value))
        throw new InvalidArgument(
          `telemetry sample ${i}: metric ${JSON.stringify(name.slice(0, 64))} must be a finite number`,
        );
    }
    return { at: when, metrics: metrics as Record<string, number> };
  });
}

export class DeviceIngress {
  readonly stats: IngressStats = {
    received: 0,
    applied: 0,
    duplicates: 0,
    stale: 0,
    rejected: 0,
    failed: 0,
    throttled: 0,
    rateLimited: 0,
  };
  #subs: Subscription[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly api: TwinApi,
    private readonly limits: JsonLimits,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    /** Bounds the device work in flight (class `device`, per twin); absent: no bound. */
    private readonly admission?: Admission,
    /** Each device's token bucket of reports and telemetry messages; absent: no rate limit. */
    private readonly deviceRate?: DeviceRate,
  ) {}

  /**
   * True when the NATS server lets a device publish only on its own subjects (device credentials
   * through the auth callout): a report on `doppel.dev.<type>.<id>` then comes from that device,
   * and its events record the principal `device:<type>/<id>`. False: nobody is named.
   */
  devicesAuthenticated = false;

  /** Told of every device message refused for being over its device's rate (metrics). */
  onRateLimited: ((device: string) => void) | undefined;

  /**
   * Processes one device message: resolves once its effects are persisted (or it was refused).
   * `messageId` is the report's deduplication id. Never throws.
   */
  async process(
    subject: string,
    data: Uint8Array,
    messageId: string | undefined,
    options: ProcessOptions = {},
  ): Promise<Processed> {
    // Continue the device's trace when it sent a traceparent header.
    const headers = options.headers;
    const parent = tracedParent((key) => headers?.get(key));
    const processed =
      parent !== undefined
        ? await inSpan(
            `ingress ${subject.split(".").at(-1) ?? "?"}`,
            SpanKind.CONSUMER,
            { "messaging.destination": subject },
            () => this.#process(subject, data, messageId, options),
            parent,
          )
        : await this.#process(subject, data, messageId, options);
    if (processed.rejected)
      this.onRejected?.(String((processed.reply as { error?: { code?: string } }).error?.code));
    return processed;
  }

  /** Told of every report acknowledged without being applied (metrics). */
  onDropped: ((reason: "duplicate" | "stale") => void) | undefined;

  /** Told of every device message refused as invalid (metrics). */
  onRejected: ((code: string) => void) | undefined;

  async #process(
    subject: string,
    data: Uint8Array,
    messageId: string | undefined,
    options: ProcessOptions = {},
  ): Promise<Processed> {
    this.stats.received++;
    const encoding = encodingOf(options.headers);
    let channel: DeviceChannel | undefined;
    let permit: Permit | undefined;
    try {
      const parsed = parseDeviceSubject(subject);
      const ref = parsed.ref;
      channel = parsed.channel;
      const device = `${ref.type}/${ref.id}`;
      // Over its own rate, a device's report or telemetry is refused for good (not redelivered):
      // the device hears it on `.errors`, other devices' buckets are untouched.
      if (this.deviceRate && (channel === DeviceChannel.Reported || channel === DeviceChannel.Telemetry)) {
        // A message a CoAP or HTTP listener charged as it arrived is not charged again.
        const decision = this.deviceRate.take(device, messageId);
        if (!decision.allowed)
          return this.#rateLimited(this.deviceRate, device, decision.retryAfterMs, encoding, channel);
      }
      // Admitted before anything is decoded or queued for the twin; over the bound: throttled.
      permit = this.admission?.admit("device", device);
      switch (channel) {
        case DeviceChannel.Reported: {
          const stamped = reportStamp(options.headers, decodeReported(data, encoding, this.limits));
          const result = await this.api.report(ref, stamped.patch, {
            ...stamped.stamp,
            ...present({ messageId, deadline: options.deadline }),
            ...(this.devicesAuthenticated ? { principal: devicePrincipal(device) } : {}),
          });
          if (result.stale) this.stats.stale++;
          else if (result.duplicate) this.stats.duplicates++;
          else this.stats.applied++;
          if (result.duplicate) this.onDropped?.(result.stale ? "stale" : "duplicate");
          return {
            reply: { ok: true, version: result.version, duplicate: result.duplicate },
            rejected: false,
            retry: false,
            encoding,
            channel,
          };
        }
        case DeviceChannel.Telemetry: {
          const body = decodeTelemetry(data, encoding, this.limits);
          const samples = parseTelemetry(body, options.receivedAt ?? this.now());
          // Keyed by message: a redelivered or re-sent telemetry message stores its samples once.
          await this.api.recordTelemetry(
            ref,
            messageId === undefined ? samples : samples.map((s, i) => ({ ...s, key: `${messageId}/${i}` })),
          );
          this.stats.applied++;
          return { reply: { ok: true }, rejected: false, retry: false, encoding, channel };
        }
        case DeviceChannel.Sync: {
          let reply: SyncReply;
          try {
            const view = await this.api.get(ref);
            reply = {
              version: view.version,
              reported: view.reported,
              desired: view.desired,
              delta: view.delta,
            };
          } catch (error) {
            if (!(error instanceof NotFound)) throw error;
            reply = { version: 0, reported: {}, desired: {}, delta: {} };
          }
          this.stats.applied++;
          return { reply, rejected: false, retry: false, encoding, channel };
        }
        default:
          throw new InvalidArgument(`devices do not publish on '${channel}'`);
      }
    } catch (error) {
      const failure = DoppelError.from(error);
      const retry = failure.retryable;
      const throttled = error instanceof Throttled;
      if (throttled) this.stats.throttled++;
      else if (retry) this.stats.failed++;
      else this.stats.rejected++;
      this.logger.debug({ subject, code: failure.code, err: failure.message }, "device message not applied");
      return {
        reply: errorReply(failure),
        rejected: !retry,
        retry,
        ...(throttled ? { throttled } : {}),
        encoding,
        ...present({ channel }),
      };
    } finally {
      permit?.release();
    }
  }

  #rateLimited(
    rate: DeviceRate,
    device: string,
    retryAfterMs: number,
    encoding: Encoding,
    channel: DeviceChannel,
  ): Processed {
    this.stats.rateLimited++;
    this.onRateLimited?.(device);
    const error = rate.exhausted(device, retryAfterMs, true);
    return { reply: errorReply(error), rejected: true, retry: false, encoding, channel };
  }

  /**
   * Answers a message: as a reply if one is expected (in the request's encoding), else errors go
   * to the twin's `errors` subject and a sync's answer to its `desired` subject.
   */
  answer(message: TransportMessage, processed: Processed): void {
    const failed = processed.rejected || processed.retry;
    if (message.reply !== undefined) {
      const headers = new Map(encodingHeaders(processed.encoding ?? "json") ?? []);
      if ("duplicate" in processed.reply && processed.reply.duplicate === true)
        headers.set("Doppel-Duplicate", "true");
      this.transport.respond(message, this.#encodeReply(processed), headers.size ? { headers } : {});
      return;
    }
    if (failed) this.publishError(message.subject, processed.reply);
    else if (processed.channel === DeviceChannel.Sync) this.#publishSync(message.subject, processed);
  }

  #encodeReply(processed: Processed): Uint8Array {
    if (processed.encoding !== "protobuf") return encodeJson(processed.reply);
    const reply = processed.reply as { error?: { code: string; message: string } };
    if (reply.error) return encodeProtobuf("Error", { code: reply.error.code, message: reply.error.message });
    if (processed.channel === DeviceChannel.Sync)
      return encodeDeviceState(processed.reply as SyncReply, "protobuf");
    return new Uint8Array();
  }

  /** MQTT-style sync (no reply subject): the state goes to the twin's `desired` subject. */
  #publishSync(subject: string, processed: Processed): void {
    try {
      const { ref } = parseDeviceSubject(subject);
      this.transport.publish(deviceSubject(ref, DeviceChannel.Desired), encodeJson(processed.reply));
    } catch {
      // The transport is closing.
    }
  }

  /** Publishes an error event on the twin's `errors` subject, when the subject names a valid twin. */
  publishError(subject: string, reply: object): void {
    try {
      const { ref } = parseDeviceSubject(subject);
      const error = (reply as { error?: object }).error ?? reply;
      this.transport.publish(deviceSubject(ref, DeviceChannel.Errors), encodeJson({ ...error, subject }));
    } catch {
      // The subject itself is invalid: there is no twin to tell. The message is counted and dropped.
    }
  }

  /**
   * Subscribes to device subjects directly (core messaging: the reply is the ack). With
   * `durable`, reported state and telemetry are left to the JetStream consumer and only sync
   * requests (and malformed subjects) are taken here. With `types` (a thick edge's node), only
   * those types' subjects are taken: the edge forwards the others' to the cloud, whose nodes
   * answer their sync requests across the leaf link.
   */
  start(options: { durable?: boolean; types?: readonly string[] } = {}): void {
    const handle = (message: TransportMessage) => {
      void this.process(message.subject, message.data, message.headers.get("Nats-Msg-Id"), {
        headers: message.headers,
      }).then((processed) => this.answer(message, processed));
    };
    const channels = options.durable
      ? [DeviceChannel.Sync]
      : [DeviceChannel.Reported, DeviceChannel.Telemetry, DeviceChannel.Sync];
    for (const channel of channels) {
      for (const subject of deviceSubjects(channel, options.types))
        this.#subs.push(this.transport.subscribe(subject, handle, { queue: QUEUE }));
    }
    // Subjects with too few or too many tokens never match the wildcards above: catch them to count and refuse them.
    const malformed = (message: TransportMessage) => {
      const tokens = message.subject.split(".").length;
      if (tokens === 5) return;
      void this.process(message.subject, message.data, undefined).then((processed) =>
        this.answer(message, processed),
      );
    };
    // Not `doppel.dev.>`: that would bring every well-formed message here a second time, and
    // would count as a responder on the devices' `cmd` subjects (hiding "device offline").
    for (const pattern of ["doppel.dev.*", "doppel.dev.*.*", "doppel.dev.*.*.*.>"]) {
      this.#subs.push(this.transport.subscribe(pattern, malformed, { queue: `${QUEUE}-malformed` }));
    }
  }

  /** Stops subscribing. */
  async stop(): Promise<void> {
    for (const sub of this.#subs) sub.unsubscribe();
    this.#subs = [];
  }
}
