/**
 * A twin's complete state at one version, and the fold that advances it by one event.
 *
 * The fold is the single place where events change a twin: built-in `$` events change the shadow
 * and reminders, every other event goes to the developer's `apply`. Activation, replay and live
 * turns all use it, so snapshot + replay always equals full replay.
 */
import { Internal } from "../core/errors.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";
import type { Mutable } from "../core/present.ts";
import type { EventRecord, QueuedCommand, ReminderState, TwinSnapshot, TwinView } from "../core/records.ts";
import type { Twin, TwinEvent } from "../core/twin.ts";
import { stampReported } from "../shadow/reported-times.ts";
import { applyDesired, applyReported, computeDelta } from "../shadow/shadow.ts";
import { CommandEvent, foldCommands, NO_COMMANDS } from "./queued-commands.ts";

/** How many causing message ids a twin remembers to drop redelivered duplicates. */
export const RECENT_CAUSATIONS = 16;

/**
 * How many of the latest stamped reports a twin remembers by their device sequence number, so a
 * stamped report below the high-water mark can be told apart: applied already (dropped), or
 * overtaken by newer ones before it arrived (applied late, for the fields no newer report set).
 * A report overtaken by more than this many is dropped as superseded.
 */
export const DEVICE_SEQ_WINDOW = 64;

/** What a stamped report's sequence number is to a twin (see {@link DEVICE_SEQ_WINDOW}). */
export type StampVerdict = "new" | "late" | "applied";

/** Judges a report stamped `seq` against the stamps `data` has applied. */
export function judgeStamp(data: TwinData, seq: number): StampVerdict {
  if (seq > data.deviceSeq) return "new";
  if (seq <= data.deviceSeqFloor || data.deviceSeqs.includes(seq)) return "applied";
  return "late";
}

/** The window after applying a report stamped `seq`: ascending, at most {@link DEVICE_SEQ_WINDOW}. */
function windowWith(
  seqs: readonly number[],
  floor: number,
  seq: number,
): { deviceSeqs: readonly number[]; deviceSeqFloor: number } {
  const next = [...seqs, seq].sort((a, b) => a - b);
  if (next.length <= DEVICE_SEQ_WINDOW) return { deviceSeqs: next, deviceSeqFloor: floor };
  const evicted = next.splice(0, next.length - DEVICE_SEQ_WINDOW);
  return { deviceSeqs: next, deviceSeqFloor: Math.max(floor, evicted.at(-1)!) };
}

const NONE: readonly never[] = Object.freeze([]);

export interface TwinData {
  /** Number of events folded in: the twin's version. */
  readonly seq: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly state: object;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  readonly reminders: readonly ReminderState[];
  readonly recent: readonly string[];
  /** The device's high-water mark: the highest report `seq` applied (0: none). */
  readonly deviceSeq: number;
  /** When each reported leaf was last set (see `shadow/reported-times.ts`). */
  readonly reportedAt: JsonObject;
  /** The stamps of the latest stamped reports applied, ascending (see {@link DEVICE_SEQ_WINDOW}). */
  readonly deviceSeqs: readonly number[];
  /** Stamps at or below this are not remembered one by one: treated as applied. */
  readonly deviceSeqFloor: number;
  /** The stamp of the report that last set each reported leaf, in the shape of `reported`. */
  readonly reportedSeq: JsonObject;
  /** Device commands queued for the device, oldest first (see `queued-commands.ts`). */
  readonly deviceCommands: readonly QueuedCommand[];
}

/** Built-in event types (reserved: developer events may not start with `$`). */
export const BuiltIn = {
  Reported: "$reported",
  Desired: "$desired",
  ReminderSet: "$reminder.set",
  ReminderCancelled: "$reminder.cancelled",
  ReminderFired: "$reminder.fired",
  CommandQueued: CommandEvent.Queued,
  CommandDelivered: CommandEvent.Delivered,
  CommandExpired: CommandEvent.Expired,
} as const;

const EMPTY: JsonObject = Object.freeze({});

/** The data of a twin that has no events yet. */
export function initialData(twin: Twin<object, TwinEvent, object>): TwinData {
  return {
    seq: 0,
    createdAt: 0,
    updatedAt: 0,
    state: twin.initialState(),
    reported: EMPTY,
    desired: EMPTY,
    reminders: NONE,
    recent: NONE,
    deviceSeq: 0,
    reportedAt: EMPTY,
    deviceSeqs: NONE,
    deviceSeqFloor: 0,
    reportedSeq: EMPTY,
    deviceCommands: NO_COMMANDS,
  };
}

/** Rebuilds data from a snapshot. */
export function fromSnapshot(snapshot: TwinSnapshot): TwinData {
  return {
    seq: snapshot.seq,
    createdAt: snapshot.createdAt,
    updatedAt: snapshot.at,
    state: snapshot.state,
    reported: snapshot.reported,
    desired: snapshot.desired,
    reminders: snapshot.reminders.length ? snapshot.reminders : NONE,
    recent: snapshot.recent.length ? snapshot.recent : NONE,
    deviceSeq: snapshot.deviceSeq ?? 0,
    reportedAt: snapshot.reportedAt ?? EMPTY,
    deviceSeqs: snapshot.deviceSeqs ?? NONE,
    // A snapshot from before the window: every stamp up to the high-water mark counts as applied.
    deviceSeqFloor: snapshot.deviceSeqFloor ?? (snapshot.deviceSeqs ? 0 : (snapshot.deviceSeq ?? 0)),
    reportedSeq: snapshot.reportedSeq ?? EMPTY,
    deviceCommands: snapshot.deviceCommands?.length ? snapshot.deviceCommands : NO_COMMANDS,
  };
}

/** The snapshot of `data`. */
export function toSnapshot(data: TwinData): TwinSnapshot {
  return {
    seq: data.seq,
    at: data.updatedAt,
    createdAt: data.createdAt,
    state: data.state as JsonObject,
    reported: data.reported,
    desired: data.desired,
    reminders: data.reminders,
    recent: data.recent,
    deviceSeq: data.deviceSeq,
    reportedAt: data.reportedAt,
    deviceSeqs: data.deviceSeqs,
    deviceSeqFloor: data.deviceSeqFloor,
    reportedSeq: data.reportedSeq,
    ...(data.deviceCommands.length ? { deviceCommands: data.deviceCommands } : {}),
  };
}

/** The query view of `data`. */
export function toView(type: string, id: string, data: TwinData): TwinView {
  return {
    type,
    id,
    version: data.seq,
    state: data.state as JsonObject,
    reported: data.reported,
    desired: data.desired,
    delta: computeDelta(data.desired, data.reported),
    reportedAt: data.reportedAt,
    createdAt: data.createdAt,
    updatedAt: data.updatedAt,
  };
}

function num(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

function foldReminders(reminders: readonly ReminderState[], record: EventRecord): readonly ReminderState[] {
  const d = record.data;
  const name = String(d["name"]);
  const others = reminders.filter((r) => r.name !== name);
  switch (record.type) {
    case BuiltIn.ReminderSet: {
      const every = d["every"];
      const payload = isJsonObject(d["payload"]) ? d["payload"] : EMPTY;
      const next: ReminderState =
        typeof every === "number"
          ? { name, dueAt: num(d["dueAt"]), payload, every }
          : { name, dueAt: num(d["dueAt"]), payload };
      return [...others, next];
    }
    case BuiltIn.ReminderCancelled:
      return others.length ? others : NONE;
    default: {
      // $reminder.fired: a one-shot reminder is done; a repeating one moves to its next due time after the firing.
      const fired = reminders.find((r) => r.name === name);
      if (!fired?.every) return others.length ? others : NONE;
      const periods = Math.floor((record.at - fired.dueAt) / fired.every) + 1;
      return [...others, { ...fired, dueAt: fired.dueAt + Math.max(1, periods) * fired.every }];
    }
  }
}

function foldRecent(recent: readonly string[], causation: string | undefined): readonly string[] {
  if (causation === undefined || recent[recent.length - 1] === causation) return recent;
  const next = recent.length >= RECENT_CAUSATIONS ? recent.slice(1) : recent.slice();
  next.push(causation);
  return next;
}

/**
 * Advances `data` by one event, in place: only data that no one else holds yet (a turn's own copy,
 * a replay's), so that a turn of several events, or a replay of many, makes one object instead of
 * one per event (what was shared stays as it was: every value the fold changes is a new one). Throws `Internal` if the event is not the next in sequence; after a throw (that,
 * or the developer's `apply`), `data` is to be dropped.
 */
export function foldInto(
  twin: Twin<object, TwinEvent, object>,
  data: Mutable<TwinData>,
  record: EventRecord,
): void {
  if (record.seq !== data.seq + 1) {
    throw new Internal(
      `event ${record.seq} cannot follow version ${data.seq} of ${twin.ref.type}/${twin.ref.id}`,
    );
  }
  const patch = record.data["patch"];
  switch (record.type) {
    case BuiltIn.Reported: {
      // `seq` and `at`: the device's stamp, when the report had one (see `reportedEvent`).
      const seq = record.data["seq"];
      const at = record.data["at"];
      if (isJsonObject(patch)) {
        const shadow = applyReported(data, patch);
        data.reported = shadow.reported;
        data.desired = shadow.desired;
        data.reportedAt = stampReported(data.reportedAt, patch, typeof at === "number" ? at : record.at);
        if (typeof seq === "number") data.reportedSeq = stampReported(data.reportedSeq, patch, seq);
      }
      if (typeof seq === "number") {
        if (seq > data.deviceSeq) data.deviceSeq = seq;
        const window = windowWith(data.deviceSeqs, data.deviceSeqFloor, seq);
        data.deviceSeqs = window.deviceSeqs;
        data.deviceSeqFloor = window.deviceSeqFloor;
      }
      break;
    }
    case BuiltIn.Desired:
      if (isJsonObject(patch)) data.desired = applyDesired(data, patch).desired;
      break;
    case BuiltIn.ReminderSet:
    case BuiltIn.ReminderCancelled:
    case BuiltIn.ReminderFired:
      data.reminders = foldReminders(data.reminders, record);
      break;
    case BuiltIn.CommandQueued:
    case BuiltIn.CommandDelivered:
    case BuiltIn.CommandExpired:
      data.deviceCommands = foldCommands(data.deviceCommands, record);
      break;
    default:
      data.state = twin.apply(data.state, record.data as unknown as TwinEvent);
  }
  if (data.seq === 0) data.createdAt = record.at;
  data.seq = record.seq;
  data.updatedAt = record.at;
  data.recent = foldRecent(data.recent, record.causation);
}
