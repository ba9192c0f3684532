/**
 * Device reports that arrive over request/response protocols (CoAP, HTTPS) rather than as NATS
 * messages: checked as NATS ingress would check them, then published the durable way a NATS
 * device's report goes (`Transport.publishDurable` on the device's subject: into the JetStream
 * ingress stream on NATS; processed and persisted in-process), so they are applied by the same
 * ingress, in the same order, with the same deduplication. The caller acknowledges its client only
 * once {@link DurableReports.store} resolves.
 *
 * Checked before anything is published: the device's credential (against the credentials file of
 * `doppel devices provision`), the report stamp and the type's reported schema (or the telemetry
 * samples), the device's rate (`limits.deviceRate`) and admission control (class `device`).
 */
import type { Transport } from "../../../cluster/transport/transport.ts";
import type { Admission, Permit } from "../../core/admission.ts";
import {
  DoppelError,
  InvalidArgument,
  PermissionDenied,
  Unauthenticated,
  Unavailable,
  type WireError,
} from "../../core/errors.ts";
import { refKey, type TwinRef } from "../../core/ids.ts";
import type { JsonLimits, JsonObject } from "../../core/json.ts";
import type { TwinRegistry } from "../../engine/twin-type.ts";
import type { DeviceCredentials } from "../auth/device-credentials.ts";
import {
  AT_HEADER,
  DeviceChannel,
  decodeJsonPayload,
  deviceSubject,
  encodeJson,
  reportStamp,
  SEQ_HEADER,
  type SyncReply,
  transportFailure,
} from "../protocol.ts";
import { parseTelemetry } from "./device-ingress.ts";
import type { DeviceRate } from "./device-rate.ts";

/** Bounds of a sync reply (the node's own answer: the twin's whole shadow). */
const SYNC_REPLY_LIMITS: JsonLimits = { maxBytes: 16 * 1024 * 1024, maxDepth: 256 };

export interface DurableReportsOptions {
  /** The node's device transport (NATS or in-process). */
  readonly transport: Transport;
  readonly registry: TwinRegistry;
  readonly limits: JsonLimits;
  /** The device credentials file; absent: no credential is checked. */
  readonly credentials: DeviceCredentials | undefined;
  /** Refuse a report without a valid credential. */
  readonly requireCredentials: boolean;
  readonly admission?: Admission;
  /** The node's device rate (shared with ingress, which then does not charge these messages again). */
  readonly deviceRate?: DeviceRate;
  /**
   * Whether this node's ingress consumes `channel` messages of `type` from the stream (default:
   * all). Only those are remembered as paid for; the others are charged and forgotten.
   */
  readonly ingestedHere?: (type: string, channel: "reported" | "telemetry") => boolean;
  readonly now: () => number;
  /** How long a report may wait for its durable acknowledgement (then `Unavailable`). */
  readonly ackTimeoutMs: number;
  /** The protocol's name, keeping its devices' admission apart (`coap`, `http`). */
  readonly source: string;
  /** How the protocol's devices send their credential, for the error of a missing one. */
  readonly credentialHint: string;
}

/** What a device sends besides its body. */
export interface ReportMeta {
  /** `Doppel-Seq` (reports only): the device's sequence number, as text. */
  readonly seq?: string | undefined;
  /** `Doppel-At` (reports only): the device's time of the report, epoch ms, as text. */
  readonly at?: string | undefined;
  /** The message's deduplication id. */
  readonly messageId: string;
}

export class DurableReports {
  constructor(private readonly options: DurableReportsOptions) {}

  /**
   * Checks a device's secret (required unless the listener is open); throws 401/403-class errors.
   * `user` is the device the credential names (`type/id`, HTTP Basic's user name), default `ref`:
   * a valid credential of another device than `ref` is `PermissionDenied` (a device reports only
   * for itself).
   */
  authenticate(ref: TwinRef, secret: string | undefined, user: string = refKey(ref)): void {
    const { credentials, requireCredentials } = this.options;
    if (secret === undefined) {
      if (!requireCredentials) return;
      throw new Unauthenticated(`missing credential: ${this.options.credentialHint}`);
    }
    if (!credentials) {
      if (!requireCredentials) return;
      throw new Unauthenticated("this node checks no device credentials");
    }
    const check = credentials.check(user, secret);
    if (check.ok) {
      if (refKey(check.ref) === refKey(ref)) return;
      throw new PermissionDenied(
        `the credential of device ${refKey(check.ref)} may not act for device ${refKey(ref)}`,
      );
    }
    if (check.reason === "revoked" || check.reason === "revoked-in-cloud")
      throw new PermissionDenied(
        `the credential of device ${refKey(ref)} was revoked${check.reason === "revoked-in-cloud" ? " in the cloud" : ""}`,
      );
    throw new Unauthenticated(`device credential refused (${check.reason})`);
  }

  /** Validates a report or telemetry message as ingress would, and publishes it durably. */
  async store(
    ref: TwinRef,
    channel: "reported" | "telemetry",
    body: JsonObject,
    meta: ReportMeta,
  ): Promise<void> {
    const device = refKey(ref);
    // Bounded exactly as ingress will bound the published bytes (size, depth), so nothing
    // acknowledged here is refused there.
    const data = encodeJson(body);
    decodeJsonPayload(data, channel === "reported" ? "reported patch" : "telemetry", this.options.limits);
    const headers = new Map<string, string>();
    if (meta.seq !== undefined) headers.set(SEQ_HEADER, meta.seq);
    if (meta.at !== undefined) headers.set(AT_HEADER, meta.at);
    if (channel === "reported") {
      const stamped = reportStamp(headers, body);
      this.options.registry.get(ref.type).parseReported(stamped.patch);
    } else {
      if (meta.seq !== undefined || meta.at !== undefined)
        throw new InvalidArgument("telemetry takes no seq or at: give each sample its own 'at'");
      parseTelemetry(body, this.options.now());
    }
    const rate = this.options.deviceRate;
    if (this.options.ingestedHere?.(ref.type, channel) ?? true) rate?.prepay(device, meta.messageId);
    else rate?.charge(device);
    let permit: Permit | undefined;
    try {
      // Admitted as device work of its own client, so these messages and the same device's
      // messages being applied do not count against each other's per-client bound.
      permit = this.options.admission?.admit("device", `${this.options.source}:${device}`);
      await this.#publish(
        ref,
        channel === "reported" ? DeviceChannel.Reported : DeviceChannel.Telemetry,
        data,
        headers,
        meta.messageId,
      );
    } catch (error) {
      rate?.forget(device, meta.messageId);
      throw error;
    } finally {
      permit?.release();
    }
  }

  /** The device's desired state and version (what a NATS device's `sync` request answers). */
  async state(ref: TwinRef): Promise<SyncReply> {
    type Reply = SyncReply | { error: WireError };
    let reply: Reply;
    try {
      const message = await this.options.transport.request(
        deviceSubject(ref, DeviceChannel.Sync),
        new Uint8Array(),
        { timeoutMs: this.options.ackTimeoutMs },
      );
      reply = decodeJsonPayload(message.data, "sync reply", SYNC_REPLY_LIMITS) as unknown as Reply;
    } catch (error) {
      throw transportFailure(error, `desired state of ${refKey(ref)}`);
    }
    if ("error" in reply) throw DoppelError.fromWire(reply.error);
    return reply;
  }

  async #publish(
    ref: TwinRef,
    channel: DeviceChannel,
    data: Uint8Array,
    headers: Map<string, string>,
    messageId: string,
  ): Promise<void> {
    const what = `${channel} of ${refKey(ref)}`;
    let ack: Awaited<ReturnType<Transport["publishDurable"]>>;
    try {
      ack = await this.options.transport.publishDurable(deviceSubject(ref, channel), data, {
        messageId,
        timeoutMs: this.options.ackTimeoutMs,
        headers,
      });
    } catch (error) {
      const failure = transportFailure(error, what);
      if (failure.code !== "UNAVAILABLE" && failure.code !== "DEADLINE_EXCEEDED") throw failure;
      throw new Unavailable(
        `${what} was not stored: the ingress stream did not accept it (${failure.message})`,
      );
    }
    // In-process the ack is the ingress's reply, which may carry its refusal.
    if (ack.data && ack.data.byteLength > 0) {
      let reply: { error?: WireError } | undefined;
      try {
        reply = decodeJsonPayload(ack.data, "ingress reply", this.options.limits) as typeof reply;
      } catch {
        reply = undefined;
      }
      if (reply?.error) throw DoppelError.fromWire(reply.error);
    }
  }
}
