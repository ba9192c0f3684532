/**
 * Turns one {@link TwinCommit} into the exact statements that write it: the event rows grouped by
 * partition (bucket), and the derived rows — the view, reminder index changes, the twin's reminder
 * rows and the bucket index. Pure: the caller supplies the twin's current reminder rows (needed
 * to delete index entries whose due time changed) and decides how to write the plan.
 *
 * Derived rows carry `USING TIMESTAMP <version>` (the seq of the commit's last event), so writing
 * a plan late or twice can never undo a newer commit. Two rules keep equal timestamps safe
 * (Cassandra lets a delete win a tie): an index entry whose key does not change is not deleted,
 * and a reminder both cleared and set in one commit is only set.
 *
 * Plans are also stored (as {@link StagedPlan}, statement names and values, never CQL text) for
 * commits too large for one batch; see `commit-writer.ts`.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { InvalidArgument } from "../../core/errors.ts";
import { refKey } from "../../core/ids.ts";
import type { TwinCommit } from "../../core/records.ts";
import { commitShapeError } from "../commit-check.ts";
import { eventBucket, opensBucket, viewBucket } from "./buckets.ts";
import type { Layout } from "./migrate.ts";
import { eventParams, viewParams } from "./rows.ts";
import type { Bound } from "./session.ts";
import type { Statements } from "./statements.ts";

/** A twin's reminder as its `twins` row records it. */
export interface ReminderRow {
  readonly shard: number;
  readonly dueAt: number;
}

/** One statement by name, with its values. */
export interface NamedBound {
  readonly statement: keyof Statements;
  readonly params: readonly unknown[];
}

/** Everything one commit writes. */
export interface CommitPlan {
  /** Event rows, one group per partition, ascending by bucket. */
  readonly eventGroups: readonly (readonly NamedBound[])[];
  /** View, reminder index and rows, bucket index. */
  readonly derived: readonly NamedBound[];
  /** Rough serialised size of all values, bytes (compared with `maxBatchBytes`). */
  readonly bytes: number;
}

/** A plan as stored while a large commit is applied (JSON-safe: `undefined` values are marked). */
export interface StagedPlan {
  readonly expectedSeq: number;
  readonly firstCommitId: string | undefined;
  readonly eventGroups: readonly (readonly NamedBound[])[];
  readonly derived: readonly NamedBound[];
}

const UNSET = { $unset: true } as const;

/** Size of a value as bound (strings by UTF-8 length, numbers 8 bytes) plus a per-statement overhead. */
export function estimateBytes(statements: readonly NamedBound[]): number {
  let bytes = 0;
  for (const s of statements) {
    bytes += 48;
    for (const p of s.params) bytes += typeof p === "string" ? Buffer.byteLength(p) : 8;
  }
  return bytes;
}

/**
 * Checks `commit` (see `commitShapeError`) and plans it. Fails with
 * `InvalidArgument` for a malformed commit (bad `expectedSeq`, events that do not continue the
 * log, data that is not JSON), which then writes nothing.
 */
export function planCommit(
  commit: TwinCommit,
  layout: Layout,
  reminderRows: ReadonlyMap<string, ReminderRow>,
): CommitPlan {
  const shapeError = commitShapeError(commit);
  if (shapeError) throw shapeError;
  const key = refKey(commit.ref);
  const { type, id } = commit.ref;
  const E = commit.expectedSeq;
  const version = E + commit.events.length;
  const groups = new Map<number, NamedBound[]>();
  const derived: NamedBound[] = [];
  try {
    for (const event of commit.events) {
      const bucket = eventBucket(event.seq, layout.eventsPerBucket);
      const group = groups.get(bucket) ?? [];
      group.push({ statement: "insertEvent", params: [type, id, bucket, ...eventParams(event)] });
      groups.set(bucket, group);
      if (opensBucket(event.seq, layout.eventsPerBucket)) {
        derived.push({ statement: "insertBucket", params: [type, id, bucket, event.seq, event.at] });
      }
    }
    derived.push({
      statement: "upsertView",
      params: [type, viewBucket(id, layout.viewBuckets), ...viewParams(commit.view), version],
    });
  } catch (error) {
    throw new InvalidArgument(`${key}: commit is not serialisable as JSON: ${(error as Error).message}`);
  }
  const setNames = new Set(commit.reminders.set.map((r) => r.name));
  for (const name of commit.reminders.clear) {
    if (setNames.has(name)) continue;
    const old = reminderRows.get(name);
    if (old) derived.push(deleteIndex(version, old, type, id, name));
    derived.push({ statement: "deleteReminderRow", params: [version, type, id, name] });
  }
  for (const entry of commit.reminders.set) {
    const old = reminderRows.get(entry.name);
    if (old && (old.shard !== entry.shard || old.dueAt !== entry.dueAt)) {
      derived.push(deleteIndex(version, old, type, id, entry.name));
    }
    derived.push({
      statement: "setIndex",
      params: [entry.shard, entry.dueAt, type, id, entry.name, version],
    });
    derived.push({
      statement: "setReminderRow",
      params: [type, id, entry.name, entry.shard, entry.dueAt, version],
    });
  }
  const eventGroups = [...groups.entries()].sort(([a], [b]) => a - b).map(([, g]) => g);
  return { eventGroups, derived, bytes: estimateBytes([...eventGroups.flat(), ...derived]) };
}

function deleteIndex(version: number, old: ReminderRow, type: string, id: string, name: string): NamedBound {
  return { statement: "deleteIndex", params: [version, old.shard, old.dueAt, type, id, name] };
}

/** Resolves named statements against the keyspace's statement texts. */
export function bind(s: Statements, statements: readonly NamedBound[]): Bound[] {
  return statements.map((n) => ({ query: s[n.statement], params: n.params }));
}

/**
 * A staged plan's JSON from this size on is stored deflated: `deflate:` and the deflated bytes in
 * base64 (a plan's JSON always starts with `{`). The plan rides in the commit point's
 * lightweight transaction, whose price grows with its size, steeply between 1.2 and 2 KB (bare
 * transactions on this machine, `BENCH_LWT_ONLY=1 npm run bench:store`, 2026-12-08: 3,550/s with
 * 50 B, 2,957 with 750 B, 2,788 with 1.2 KB, 745 with 2 KB). A group commit's plan (3.3 KB median
 * in `bench:store`) deflates to about 0.7 KB; a one-event plan (about 750 B) stays JSON. Read by
 * schema 6 and later (see `schema.ts`).
 */
export const DEFLATE_FROM_BYTES = 1024;
const DEFLATED = "deflate:";
/** Most bytes a deflated plan may inflate to (a plan is at most a commit's rows: far below this). */
const MAX_INFLATED_BYTES = 256 * 1024 * 1024;

/** Serialises a plan for staging (`undefined` values survive as a marker), deflated when large. */
export function encodeStaged(plan: StagedPlan): string {
  const json = JSON.stringify(plan, (_key, value: unknown) => (value === undefined ? UNSET : value));
  if (json.length < DEFLATE_FROM_BYTES) return json;
  return DEFLATED + deflateRawSync(json).toString("base64");
}

/** The JSON of a staged plan, inflated if it was stored deflated. */
function stagedJson(text: string): string {
  if (!text.startsWith(DEFLATED)) return text;
  try {
    return inflateRawSync(Buffer.from(text.slice(DEFLATED.length), "base64"), {
      maxOutputLength: MAX_INFLATED_BYTES,
    }).toString("utf8");
  } catch (error) {
    throw new InvalidArgument(`staged commit is malformed: ${(error as Error).message}`);
  }
}

/**
 * Reads a staged plan back. Fails with `InvalidArgument` if it is not one (or names a statement
 * this store does not have): a staged plan only ever runs this store's own statements.
 */
export function decodeStaged(text: string, s: Statements): StagedPlan {
  const plan = JSON.parse(stagedJson(text), (_key, value: unknown) =>
    typeof value === "object" && value !== null && (value as { $unset?: unknown }).$unset === true
      ? undefined
      : value,
  ) as StagedPlan;
  const all = [...(plan.eventGroups ?? []).flat(), ...(plan.derived ?? [])];
  if (
    typeof plan.expectedSeq !== "number" ||
    !all.every(
      (n) => typeof n.statement === "string" && Object.hasOwn(s, n.statement) && Array.isArray(n.params),
    )
  ) {
    throw new InvalidArgument("staged commit is malformed");
  }
  // JSON.parse leaves holes where a reviver returned undefined; the driver needs dense arrays.
  const dense = (n: NamedBound): NamedBound => ({ statement: n.statement, params: Array.from(n.params) });
  return {
    expectedSeq: plan.expectedSeq,
    firstCommitId: plan.firstCommitId,
    eventGroups: plan.eventGroups.map((group) => group.map(dense)),
    derived: plan.derived.map(dense),
  };
}
