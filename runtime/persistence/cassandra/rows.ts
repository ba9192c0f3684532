/**
 * Row mapping between Doppel's records and Cassandra rows. JSON documents (event data, state,
 * shadow, snapshot parts) are stored as `text` holding JSON, numbers that can exceed 32 bits
 * (seq, times, epochs) as `bigint`. The driver returns `bigint` as a `Long`; {@link toNumber}
 * turns it back into a JavaScript number (all Doppel's numbers are safe integers).
 *
 * Decoders take a plain record (a driver `Row` is one) so they can be tested without a server.
 * A row that does not have the expected shape (a column missing or of the wrong kind) throws
 * `Internal`: that is a bug or a foreign schema, never something a caller could retry.
 */
import { Internal } from "../../core/errors.ts";
import type { TwinRef } from "../../core/ids.ts";
import type { JsonObject } from "../../core/json.ts";
import type {
  EventRecord,
  ReminderIndexEntry,
  ReminderState,
  TelemetrySample,
  TwinSnapshot,
  TwinView,
} from "../../core/records.ts";
import { decodeShadowMeta, encodeShadowMeta } from "../shadow-meta.ts";

/** A row as the driver hands it over: column name -> value. */
export type RowLike = Readonly<Record<string, unknown>>;

interface LongLike {
  toNumber(): number;
}

function isLongLike(value: unknown): value is LongLike {
  return typeof value === "object" && value !== null && typeof (value as LongLike).toNumber === "function";
}

/** A `bigint`/`int` column value (driver `Long`, number or BigInt) as a number; throws `Internal` otherwise. */
export function toNumber(value: unknown, column = "value"): number {
  if (typeof value === "number") return value;
  if (isLongLike(value)) return value.toNumber();
  if (typeof value === "bigint") return Number(value);
  throw new Internal(`cassandra row: column ${column} is not a number (${typeof value})`);
}

/** A `LIMIT ?` value: a whole number from 1 to 2^31 - 1 (CQL limits are 32-bit ints). */
export function cqlLimit(limit: number): number {
  if (!Number.isFinite(limit)) return 2_147_483_647;
  return Math.min(2_147_483_647, Math.max(1, Math.floor(limit)));
}

/** Like {@link toNumber}, but `undefined` for a null/absent value. */
export function toOptionalNumber(value: unknown, column = "value"): number | undefined {
  return value === null || value === undefined ? undefined : toNumber(value, column);
}

function text(row: RowLike, column: string): string {
  const value = row[column];
  if (typeof value !== "string") throw new Internal(`cassandra row: column ${column} is not text`);
  return value;
}

function json<T>(row: RowLike, column: string): T {
  try {
    return JSON.parse(text(row, column)) as T;
  } catch (error) {
    if (error instanceof Internal) throw error;
    throw new Internal(`cassandra row: column ${column} holds malformed JSON`);
  }
}

/** An `events` row (columns of `EVENT_COLUMNS`). */
export function decodeEvent(row: RowLike): EventRecord {
  const event: EventRecord = {
    seq: toNumber(row["seq"], "seq"),
    type: text(row, "event_type"),
    data: json<JsonObject>(row, "data"),
    at: toNumber(row["at"], "at"),
    commitId: text(row, "commit_id"),
    writer: { node: text(row, "writer_node"), epoch: toNumber(row["writer_epoch"], "writer_epoch") },
  };
  const causation = row["causation"];
  const principal = row["principal"];
  return {
    ...event,
    ...(typeof causation === "string" ? { causation } : {}),
    ...(typeof principal === "string" ? { principal } : {}),
  };
}

/** Bind values of one `insertEvent`, after the twin's key and bucket. */
export function eventParams(event: EventRecord): unknown[] {
  return [
    event.seq,
    event.commitId,
    event.type,
    JSON.stringify(event.data),
    event.at,
    // undefined = "unset": no tombstone is written for an absent causation.
    event.causation,
    event.writer.node,
    event.writer.epoch,
    event.principal, // undefined = unset, as for causation
  ];
}

/** A `views` row of type `type`. */
export function decodeView(type: string, row: RowLike): TwinView {
  return {
    type,
    id: text(row, "twin_id"),
    version: toNumber(row["version"], "version"),
    state: json<JsonObject>(row, "state"),
    reported: json<JsonObject>(row, "reported"),
    desired: json<JsonObject>(row, "desired"),
    delta: json<JsonObject>(row, "delta"),
    createdAt: toNumber(row["created_at"], "created_at"),
    updatedAt: toNumber(row["updated_at"], "updated_at"),
    // Absent in rows written before schema version 3.
    ...(row["reported_at"] == null ? {} : { reportedAt: json<JsonObject>(row, "reported_at") }),
  };
}

/** Bind values of `upsertView` after twin type and vbucket: id, version, JSON parts, times. */
export function viewParams(view: TwinView): unknown[] {
  return [
    view.id,
    view.version,
    JSON.stringify(view.state),
    JSON.stringify(view.reported),
    JSON.stringify(view.desired),
    JSON.stringify(view.delta),
    view.createdAt,
    view.updatedAt,
    // undefined = "unset": a view without field times writes no column.
    view.reportedAt === undefined ? undefined : JSON.stringify(view.reportedAt),
  ];
}

/** The snapshot in a `twins` row, or `undefined` when the twin has none. */
export function decodeSnapshot(row: RowLike): TwinSnapshot | undefined {
  const seq = toOptionalNumber(row["snapshot_seq"], "snapshot_seq");
  if (seq === undefined) return undefined;
  return {
    seq,
    at: toNumber(row["snapshot_at"], "snapshot_at"),
    createdAt: toNumber(row["created_at"], "created_at"),
    state: json<JsonObject>(row, "state"),
    reported: json<JsonObject>(row, "reported"),
    desired: json<JsonObject>(row, "desired"),
    reminders: json<ReminderState[]>(row, "reminders"),
    recent: json<string[]>(row, "recent"),
    ...decodeShadowMeta(row["shadow_meta"] == null ? {} : json<JsonObject>(row, "shadow_meta")),
  };
}

/** Bind values of `writeSnapshot`: timestamp (= seq), the columns, then the twin's key. */
export function snapshotParams(ref: TwinRef, snapshot: TwinSnapshot): unknown[] {
  return [
    snapshot.seq,
    snapshot.seq,
    snapshot.at,
    snapshot.createdAt,
    JSON.stringify(snapshot.state),
    JSON.stringify(snapshot.reported),
    JSON.stringify(snapshot.desired),
    JSON.stringify(snapshot.reminders),
    JSON.stringify(snapshot.recent),
    encodeShadowMeta(snapshot),
    ref.type,
    ref.id,
  ];
}

/** A `reminder_index` row of `shard`. */
export function decodeReminder(shard: number, row: RowLike): ReminderIndexEntry {
  return {
    shard,
    type: text(row, "twin_type"),
    id: text(row, "twin_id"),
    name: text(row, "name"),
    dueAt: toNumber(row["due_at"], "due_at"),
  };
}

/** A `telemetry` row of twin `ref`. A sample without metrics (an empty map is stored as null) has `{}`. */
export function decodeSample(ref: TwinRef, row: RowLike): TelemetrySample {
  const raw = row["metrics"];
  const metrics: Record<string, number> = {};
  if (raw !== null && raw !== undefined) {
    if (typeof raw !== "object") throw new Internal("cassandra row: column metrics is not a map");
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      metrics[name] = toNumber(value, `metrics.${name}`);
    }
  }
  return { ref: { type: ref.type, id: ref.id }, at: toNumber(row["at"], "at"), metrics };
}
