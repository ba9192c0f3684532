/**
 * `TwinApi`: what services (through the gRPC gateway), twins (through `call`) and device ingress
 * can ask of the twins. Every input is untrusted: implementations validate ids, types, payloads
 * and arguments before anything is queued or written, and fail with a `DoppelError`.
 */

import type { TwinRef } from "./ids.ts";
import type { Json, JsonObject } from "./json.ts";
import type {
  ChangeListener,
  EventRecord,
  HistoryRange,
  TelemetrySample,
  TwinView,
  ViewPage,
} from "./records.ts";

export interface CallOptions {
  /** Epoch ms after which the caller stops waiting (`DeadlineExceeded`). */
  readonly deadline?: number;
  /** Id of the request or message, recorded as the events' causation. */
  readonly causation?: string;
  /** Who asks (`principalLabel`), recorded on the events as their principal (the audit trail). */
  readonly principal?: string;
  /**
   * The `principal`'s twin quota: when this call creates the twin (its first event), the creation
   * is counted under `principal`, and refused with `QuotaExceeded` once `maxTwins` are created.
   * Absent: the creation is not counted. Writes to twins that exist are never affected.
   */
  readonly maxTwins?: number;
}

export interface InvokeOptions extends CallOptions {
  /** Refuse with `VersionConflict` unless the twin is at exactly this version. */
  readonly expectedVersion?: number;
  /** Twins waiting upstream of this call (twin-to-twin calls), for cycle detection. */
  readonly chain?: readonly string[];
}

export interface ReportOptions extends CallOptions {
  /** The device's message id: a report with an id the twin has recently applied is dropped as a duplicate. */
  readonly messageId?: string;
  /**
   * The device's sequence number for this report (a positive safe integer, growing per device).
   * The twin keeps the highest applied and drops (acknowledges without applying) any report at or
   * below it, on every delivery. Unstamped reports are applied as they come (deduplicated only by
   * `messageId`).
   */
  readonly seq?: number;
  /**
   * The device's time of the report (epoch ms). A reported leaf the twin holds with a newer time
   * is left as it is (a late field never overwrites a newer one); the leaves' times are the
   * view's `reportedAt`.
   */
  readonly at?: number;
}

export interface QueryOptions {
  /** A filter expression (see runtime/query/filter.ts). */
  readonly where?: string;
  /** Page size (1..1000, default 100). */
  readonly limit?: number;
  readonly pageToken?: string;
}

/** Telemetry read options: a time range and an optional downsampling interval. */
export interface TelemetryQuery {
  readonly since: number;
  readonly until: number;
  readonly limit?: number;
  /** Aggregate into buckets of this many ms (min/max/avg/count per metric). */
  readonly intervalMs?: number;
}

export interface InvokeResult {
  readonly result: Json;
  readonly version: number;
}

export interface ReportResult {
  readonly version: number;
  /** True when nothing was applied: a message id already applied, or a stale stamp. */
  readonly duplicate: boolean;
  /** True when the report was dropped because its `seq` was at or below the twin's high-water mark. */
  readonly stale?: boolean;
}

export interface TwinApi {
  /** The latest persisted view of a twin. `NotFound` if it has no events. Never activates a twin. */
  get(ref: TwinRef): Promise<TwinView>;
  /** Runs a command on a twin and returns its result once its events are persisted. */
  invoke(ref: TwinRef, command: string, args: JsonObject, options?: InvokeOptions): Promise<InvokeResult>;
  /** Merges a desired-state patch; returns the view after it. */
  updateDesired(ref: TwinRef, patch: JsonObject, options?: InvokeOptions): Promise<TwinView>;
  /** Applies a device's reported-state patch. */
  report(ref: TwinRef, patch: JsonObject, options?: ReportOptions): Promise<ReportResult>;
  /** Pages through the views of one type, filtered. Never activates twins. */
  query(type: string, options?: QueryOptions): Promise<ViewPage>;
  /** A page of a twin's events. */
  history(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]>;
  /** Listens to a twin's persisted changes; returns the unsubscribe. */
  watch(ref: TwinRef, listener: ChangeListener): () => void;
  /** Records telemetry samples (kept apart from state events). */
  recordTelemetry(
    ref: TwinRef,
    samples: readonly { at: number; metrics: Readonly<Record<string, number>>; key?: string }[],
  ): Promise<void>;
  /** Reads telemetry, raw or downsampled. */
  telemetry(ref: TwinRef, query: TelemetryQuery): Promise<TelemetrySample[]>;
}
