/**
 * The records Doppel persists. The event log is the truth; snapshots, views (the query projection)
 * and the reminder index are derived from it and can be rebuilt by replay.
 */
import type { TwinRef } from "./ids.ts";
import type { JsonObject } from "./json.ts";

/** Who wrote an event: the node and the shard-lease epoch it held (0 on a single node without leases). */
export interface Writer {
  readonly node: string;
  readonly epoch: number;
}

/** One event in a twin's log. */
export interface EventRecord {
  /** Position in the twin's log, from 1. The twin's version after this event. */
  readonly seq: number;
  /** The event's type; built-in types start with `$` (`$reported`, `$desired`, `$reminder`...). */
  readonly type: string;
  /** The event itself, as emitted (includes `type`). */
  readonly data: JsonObject;
  /** When the turn that emitted it ran (epoch milliseconds). */
  readonly at: number;
  /** Identifies the write; an append retried with the same commit id is not duplicated. */
  readonly commitId: string;
  /** Id of the message that caused it (device message id, request id), for deduplication and tracing. */
  readonly causation?: string;
  /** Who wrote it. */
  readonly writer: Writer;
  /**
   * Who asked for it (the audit trail): the principal of the call, device or twin behind the turn,
   * as `principalLabel` writes it (`service-key:3f2a…`, `mtls:CN=billing`, `device:thermostat/t1`).
   * Absent for events no principal caused (reminders) and events written before it was recorded.
   */
  readonly principal?: string;
}

/** A durable reminder as stored in a twin's state. */
export interface ReminderState {
  readonly name: string;
  readonly dueAt: number;
  readonly payload: JsonObject;
  readonly every?: number;
}

/**
 * A device command a twin queued for its device (`sendToDevice(..., { queueFor })`) because the
 * device was unreachable: kept in the twin's persisted state until the device answers it or it
 * expires (docs/devices.md, "Queued commands").
 */
export interface QueuedCommand {
  /** The command's id: the device gets the same id on every attempt (so it can drop a resend). */
  readonly id: string;
  readonly command: string;
  readonly args: JsonObject;
  /** When it was queued (epoch ms). */
  readonly queuedAt: number;
  /** When it expires unsent (epoch ms). */
  readonly expiresAt: number;
  /** How long each attempt waits for the device's answer, ms. */
  readonly timeoutMs: number;
}

/** A twin's full state at one version: what activation starts from before replaying later events. */
export interface TwinSnapshot {
  readonly seq: number;
  /** When the last event folded in was written (epoch ms). */
  readonly at: number;
  /** When the twin's first event was written (epoch ms). */
  readonly createdAt: number;
  readonly state: JsonObject;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  readonly reminders: readonly ReminderState[];
  /** Ids of the most recent causing messages, to drop redelivered duplicates. */
  readonly recent: readonly string[];
  /** The highest device sequence number applied (the device's high-water mark); absent = none yet. */
  readonly deviceSeq?: number;
  /** When each reported leaf was last set (epoch ms), in the shape of `reported`; see {@link TwinView}. */
  readonly reportedAt?: JsonObject;
  /** The device sequence numbers of the latest stamped reports applied, ascending (a bounded window). */
  readonly deviceSeqs?: readonly number[];
  /** Stamps at or below this one are not in `deviceSeqs` any more (absent: `deviceSeq`, when `deviceSeqs` is absent too). */
  readonly deviceSeqFloor?: number;
  /** The device sequence number of the report that last set each reported leaf, in the shape of `reported`. */
  readonly reportedSeq?: JsonObject;
  /** The device commands queued for the device, oldest first (absent: none). */
  readonly deviceCommands?: readonly QueuedCommand[];
}

/** The latest state of a twin as queries see it (the projection). Reading it never activates a twin. */
export interface TwinView {
  readonly type: string;
  readonly id: string;
  readonly version: number;
  readonly state: JsonObject;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  readonly delta: JsonObject;
  /**
   * When each reported leaf was last set, in the shape of `reported` with epoch ms at the leaves:
   * the device's own time when the report carried one (`Doppel-At`, `$at`), else the time the
   * twin applied it. Absent in views written before this existed.
   */
  readonly reportedAt?: JsonObject;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** An entry in the reminder index: lets the owner of a shard find due reminders without activating twins. */
export interface ReminderIndexEntry {
  readonly shard: number;
  readonly type: string;
  readonly id: string;
  readonly name: string;
  readonly dueAt: number;
}

/**
 * Who creates a twin, when that principal's creations are counted against a quota (an API key
 * with `maxTwins`): set on a twin's first commit (`expectedSeq` 0).
 */
export interface TwinCreator {
  /** The principal's label (`principalLabel`): the count is kept under it. */
  readonly principal: string;
  /** Most twins the principal may create; its creations beyond are refused. */
  readonly maxTwins: number;
}

/** Everything one twin's turn(s) write, atomically for that twin. */
export interface TwinCommit {
  readonly ref: TwinRef;
  readonly shard: number;
  /** The twin's log must end at this sequence; `events` continue it from `expectedSeq + 1`. */
  readonly expectedSeq: number;
  readonly events: readonly EventRecord[];
  /** The twin's view after these events. */
  readonly view: TwinView;
  /** Reminder index changes: entries to upsert and reminder names to remove. */
  readonly reminders: { readonly set: readonly ReminderIndexEntry[]; readonly clear: readonly string[] };
  /**
   * On a twin's first commit, the principal whose quota counts the creation: the store counts it
   * atomically with the append (only when the commit really creates the twin: not a retry of a
   * commit already written, not a conflicting one), and refuses the commit with `QuotaExceeded`
   * when the principal has created `maxTwins` twins already. Ignored when `expectedSeq` is not 0.
   */
  readonly creator?: TwinCreator;
}

/** A numeric telemetry sample of one twin: several named metrics measured at one instant. */
export interface TelemetrySample {
  readonly ref: TwinRef;
  readonly at: number;
  readonly metrics: Readonly<Record<string, number>>;
  /**
   * Idempotency key (e.g. `<message id>/<index in the message>`): a sample appended again with the
   * same key and time is stored once (a redelivered telemetry message makes no second row).
   */
  readonly key?: string;
}

/** A page of views. */
export interface ViewPage {
  readonly views: readonly TwinView[];
  /** Pass back to get the next page; absent on the last page. */
  readonly nextPageToken?: string;
}

/** A slice of a twin's history. Bounds are inclusive; absent bounds are open. */
export interface HistoryRange {
  readonly fromVersion?: number;
  readonly toVersion?: number;
  /** Epoch ms. */
  readonly since?: number;
  /** Epoch ms. */
  readonly until?: number;
  readonly limit: number;
}

/** One persisted batch of a twin's events and the twin's view after it. */
export interface TwinChange {
  readonly ref: TwinRef;
  readonly events: readonly EventRecord[];
  readonly view: TwinView;
}

export type ChangeListener = (change: TwinChange) => void;
