/**
 * SQLite {@link EventStore}: the embedded, durable store a single node uses by default, so twins
 * survive a restart with nothing else installed. One database file (plus its WAL) per node.
 *
 * Durability: WAL journal with `synchronous=FULL` by default, so a commit is on disk before its
 * promise resolves and nothing acknowledged is lost, even on power loss. Each `commit` call is one
 * transaction for the whole group, so one fsync covers every twin in it (group commit).
 *
 * better-sqlite3 is synchronous: each method does its work at once, on the calling thread, and
 * returns a settled promise — except `queryViews`, which scans a type in short slices (a few ms
 * each, `scanSliceMs`) and lets the event loop run between them, so a query over tens of
 * thousands of twins never stalls the node's other work. Every statement is prepared once, at open; no SQL is ever built from
 * input. Failures: SQLite errors (busy, I/O, full disk, closed database) reject with `Unavailable`
 * carrying the SQLite error as `cause`; a malformed page token with `InvalidArgument`; anything
 * else with `Internal`. Nothing untyped escapes.
 */

import { createHash } from "node:crypto";
import Database from "better-sqlite3";
import { ConcurrencyConflict, DoppelError, Internal, InvalidArgument, Unavailable } from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { JsonObject } from "../core/json.ts";
import type {
  EventRecord,
  HistoryRange,
  ReminderIndexEntry,
  ReminderState,
  TelemetrySample,
  TwinCommit,
  TwinSnapshot,
  TwinView,
  ViewPage,
} from "../core/records.ts";
import {
  commitEpoch,
  commitShapeError,
  creatorOf,
  quotaExceededError,
  staleClaimError,
  staleEpochError,
} from "./commit-check.ts";
import type { EventStore, LoadedTwin, LoadOptions, TelemetryRange, ViewQuery } from "./event-store.ts";
import { decodePageToken, encodePageToken } from "./page-token.ts";
import { decodeShadowMeta, encodeShadowMeta } from "./shadow-meta.ts";
import { migrate } from "./sqlite-schema.ts";

/** How to open a {@link SqliteEventStore}. */
export interface SqliteStoreOptions {
  /** The database file (created if missing), or `":memory:"` for a private database that vanishes on close. */
  readonly path: string;
  /**
   * `"full"` (default): the WAL is fsynced at every commit; nothing acknowledged is lost, even on
   * power loss. `"normal"`: fsync only at checkpoints; survives a crash of the process, but the
   * last commits may be lost if the machine loses power.
   */
  readonly synchronous?: "full" | "normal";
  /** How long a write waits for another connection's lock before failing with `Unavailable` (ms, default 5000). */
  readonly busyTimeoutMs?: number;
  /**
   * How long a view query scans before it yields to the event loop (ms, default 3). Between
   * slices other calls run (and commits may land: a query is not one snapshot, as Cassandra
   * paging is not). 0 yields after every row (tests).
   */
  readonly scanSliceMs?: number;
}

interface EventRow {
  readonly seq: number;
  readonly event_type: string;
  readonly data: string;
  readonly at: number;
  readonly commit_id: string;
  readonly causation: string | null;
  readonly principal: string | null;
  readonly writer_node: string;
  readonly writer_epoch: number;
}

interface SnapshotRow {
  readonly seq: number;
  readonly at: number;
  readonly created_at: number;
  readonly state: string;
  readonly reported: string;
  readonly desired: string;
  readonly reminders: string;
  readonly recent: string;
  readonly shadow_meta: string;
}

interface ViewRow {
  readonly twin_id: string;
  readonly version: number;
  readonly state: string;
  readonly reported: string;
  readonly desired: string;
  readonly delta: string;
  readonly created_at: number;
  readonly updated_at: number;
  readonly reported_at: string | null;
}

interface ReminderRow {
  readonly shard: number;
  readonly twin_type: string;
  readonly twin_id: string;
  readonly name: string;
  readonly due_at: number;
}

interface TelemetryRow {
  readonly at: number;
  readonly metrics: string;
}

const EVENT_COLUMNS = "seq, event_type, data, at, commit_id, causation, writer_node, writer_epoch, principal";
const VIEW_COLUMNS = "twin_id, version, state, reported, desired, delta, created_at, updated_at, reported_at";
const REMINDER_COLUMNS = "shard, twin_type, twin_id, name, due_at";
/** Bound for open ends of ranges: beyond any epoch ms or sequence number. */
const OPEN_END = Number.MAX_SAFE_INTEGER;
/** Rows read per SQL statement by a view query: one short index range scan. */
const SCAN_CHUNK = 256;
/** Default of {@link SqliteStoreOptions.scanSliceMs}. */
const DEFAULT_SCAN_SLICE_MS = 3;

/** Lets the event loop run (I/O callbacks, timers) before continuing. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function prepareStatements(db: Database.Database) {
  return {
    lastSeq: db.prepare<[string, string], { last: number }>(
      "SELECT coalesce(max(seq), 0) AS last FROM events WHERE twin_type = ? AND twin_id = ?",
    ),
    lastEpoch: db.prepare<[string, string], { epoch: number }>(
      "SELECT writer_epoch AS epoch FROM events WHERE twin_type = ? AND twin_id = ? ORDER BY seq DESC LIMIT 1",
    ),
    claimEpoch: db.prepare<[string, string], { epoch: number }>(
      "SELECT epoch FROM claims WHERE twin_type = ? AND twin_id = ?",
    ),
    setClaim: db.prepare<[string, string, number], unknown>(
      "INSERT INTO claims (twin_type, twin_id, epoch) VALUES (?, ?, ?) ON CONFLICT (twin_type, twin_id) DO UPDATE SET epoch = excluded.epoch",
    ),
    twinsCreated: db.prepare<[string], { created: number }>(
      "SELECT created FROM twin_creations WHERE principal = ?",
    ),
    countCreation: db.prepare<[string], unknown>(
      "INSERT INTO twin_creations (principal, created) VALUES (?, 1) ON CONFLICT (principal) DO UPDATE SET created = created + 1",
    ),
    commitIdAt: db.prepare<[string, string, number], { commit_id: string }>(
      "SELECT commit_id FROM events WHERE twin_type = ? AND twin_id = ? AND seq = ?",
    ),
    insertEvent: db.prepare<
      [string, string, number, string, string, number, string, string | null, string, number, string | null],
      unknown
    >(`INSERT INTO events (twin_type, twin_id, ${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    eventsAfter: db.prepare<[string, string, number, number], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE twin_type = ? AND twin_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
    ),
    history: db.prepare<[string, string, number, number, number, number, number], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events
        WHERE twin_type = ? AND twin_id = ? AND seq BETWEEN ? AND ? AND at BETWEEN ? AND ?
        ORDER BY seq LIMIT ?`,
    ),
    upsertView: db.prepare<
      [string, string, number, string, string, string, string, number, number, string | null],
      unknown
    >(
      `INSERT INTO views (twin_type, ${VIEW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (twin_type, twin_id) DO UPDATE SET
          version = excluded.version, state = excluded.state, reported = excluded.reported,
          desired = excluded.desired, delta = excluded.delta,
          created_at = excluded.created_at, updated_at = excluded.updated_at,
          reported_at = excluded.reported_at`,
    ),
    view: db.prepare<[string, string], ViewRow>(
      `SELECT ${VIEW_COLUMNS} FROM views WHERE twin_type = ? AND twin_id = ?`,
    ),
    viewsAfter: db.prepare<[string, string, number], ViewRow>(
      `SELECT ${VIEW_COLUMNS} FROM views WHERE twin_type = ? AND twin_id > ? ORDER BY twin_id LIMIT ?`,
    ),
    upsertSnapshot: db.prepare<
      [string, string, number, number, number, string, string, string, string, string, string],
      unknown
    >(
      `INSERT INTO snapshots (twin_type, twin_id, seq, at, created_at, state, reported, desired, reminders, recent, shadow_meta)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (twin_type, twin_id) DO UPDATE SET
          seq = excluded.seq, at = excluded.at, created_at = excluded.created_at, state = excluded.state,
          reported = excluded.reported, desired = excluded.desired, reminders = excluded.reminders,
          recent = excluded.recent, shadow_meta = excluded.shadow_meta
        WHERE excluded.seq > snapshots.seq`,
    ),
    snapshot: db.prepare<[string, string], SnapshotRow>(
      `SELECT seq, at, created_at, state, reported, desired, reminders, recent, shadow_meta
        FROM snapshots WHERE twin_type = ? AND twin_id = ?`,
    ),
    setReminder: db.prepare<[string, string, string, number, number], unknown>(
      `INSERT INTO reminders (twin_type, twin_id, name, shard, due_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (twin_type, twin_id, name) DO UPDATE SET shard = excluded.shard, due_at = excluded.due_at`,
    ),
    clearReminder: db.prepare<[string, string, string], unknown>(
      "DELETE FROM reminders WHERE twin_type = ? AND twin_id = ? AND name = ?",
    ),
    dueAll: db.prepare<[number, number], ReminderRow>(
      `SELECT ${REMINDER_COLUMNS} FROM reminders WHERE due_at <= ?
        ORDER BY due_at, twin_type, twin_id, name LIMIT ?`,
    ),
    // The shard list is bound as one JSON array parameter and expanded by json_each.
    dueInShards: db.prepare<[string, number, number], ReminderRow>(
      `SELECT ${REMINDER_COLUMNS} FROM reminders
        WHERE shard IN (SELECT value FROM json_each(?)) AND due_at <= ?
        ORDER BY due_at, twin_type, twin_id, name LIMIT ?`,
    ),
    earliestAll: db.prepare<[], { shard: number; due_at: number }>(
      "SELECT shard, MIN(due_at) AS due_at FROM reminders GROUP BY shard",
    ),
    earliestInShards: db.prepare<[string], { shard: number; due_at: number }>(
      `SELECT shard, MIN(due_at) AS due_at FROM reminders
        WHERE shard IN (SELECT value FROM json_each(?)) GROUP BY shard`,
    ),
    setQuarantine: db.prepare<[string, string, string, number], unknown>(
      `INSERT INTO quarantine (twin_type, twin_id, reason, at) VALUES (?, ?, ?, ?)
        ON CONFLICT (twin_type, twin_id) DO UPDATE SET reason = excluded.reason, at = excluded.at`,
    ),
    clearQuarantine: db.prepare<[string, string], unknown>(
      "DELETE FROM quarantine WHERE twin_type = ? AND twin_id = ?",
    ),
    quarantineReason: db.prepare<[string, string], { reason: string }>(
      "SELECT reason FROM quarantine WHERE twin_type = ? AND twin_id = ?",
    ),
    // sample_no counts the samples already stored for this twin at this ms (writes are serialised).
    insertTelemetry: db.prepare<[string, string, number, string, string, number, string], unknown>(
      `INSERT INTO telemetry (twin_type, twin_id, at, sample_no, metrics)
        VALUES (?, ?, ?, (SELECT coalesce(max(sample_no) + 1, 0) FROM telemetry
                           WHERE twin_type = ? AND twin_id = ? AND at = ?), ?)`,
    ),
    // A keyed sample's number is derived from its key (above 2^32, clear of counted ones): stored once.
    insertKeyedTelemetry: db.prepare<[string, string, number, number, string], unknown>(
      `INSERT OR IGNORE INTO telemetry (twin_type, twin_id, at, sample_no, metrics) VALUES (?, ?, ?, ?, ?)`,
    ),
    telemetry: db.prepare<[string, string, number, number, number], TelemetryRow>(
      `SELECT at, metrics FROM telemetry WHERE twin_type = ? AND twin_id = ? AND at >= ? AND at < ?
        ORDER BY at, sample_no LIMIT ?`,
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/** A LIMIT to bind: a whole number, or -1 (no limit) when absent or not finite. */
function sqlLimit(limit: number | undefined): number {
  return limit === undefined || !Number.isFinite(limit) ? -1 : Math.max(0, Math.floor(limit));
}

function parseObject(text: string): JsonObject {
  return JSON.parse(text) as JsonObject;
}

function decodeEvent(row: EventRow): EventRecord {
  const event: EventRecord = {
    seq: row.seq,
    type: row.event_type,
    data: parseObject(row.data),
    at: row.at,
    commitId: row.commit_id,
    writer: { node: row.writer_node, epoch: row.writer_epoch },
  };
  return {
    ...event,
    ...(row.causation === null ? {} : { causation: row.causation }),
    ...(row.principal === null ? {} : { principal: row.principal }),
  };
}

function decodeView(type: string, row: ViewRow): TwinView {
  return {
    type,
    id: row.twin_id,
    version: row.version,
    state: parseObject(row.state),
    reported: parseObject(row.reported),
    desired: parseObject(row.desired),
    delta: parseObject(row.delta),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ...(row.reported_at === null ? {} : { reportedAt: parseObject(row.reported_at) }),
  };
}

function decodeReminder(row: ReminderRow): ReminderIndexEntry {
  return { shard: row.shard, type: row.twin_type, id: row.twin_id, name: row.name, dueAt: row.due_at };
}

/** Bind parameters of one event row after the twin's key, in `EVENT_COLUMNS` order. */
type EventParams = [number, string, string, number, string, string | null, string, number, string | null];

/** A commit checked and serialised before the transaction starts, so a bad one cannot fail the group. */
interface EncodedCommit {
  readonly commit: TwinCommit;
  readonly events: readonly EventParams[];
  /** `version, state, reported, desired, delta, created_at, updated_at, reported_at`. */
  readonly view: [number, string, string, string, string, number, number, string | null];
}

/**
 * Checks a commit's shape (`commitShapeError`) and serialises its JSON. A commit that fails either
 * is a caller bug: it gets an `InvalidArgument` of its own, keeping the log gap-free and the rest
 * of the group unaffected.
 */
function encodeCommit(commit: TwinCommit): EncodedCommit | InvalidArgument {
  const shapeError = commitShapeError(commit);
  if (shapeError) return shapeError;
  try {
    const v = commit.view;
    return {
      commit,
      events: commit.events.map(
        (e): EventParams => [
          e.seq,
          e.type,
          JSON.stringify(e.data),
          e.at,
          e.commitId,
          e.causation ?? null,
          e.writer.node,
          e.writer.epoch,
          e.principal ?? null,
        ],
      ),
      view: [
        v.version,
        JSON.stringify(v.state),
        JSON.stringify(v.reported),
        JSON.stringify(v.desired),
        JSON.stringify(v.delta),
        v.createdAt,
        v.updatedAt,
        v.reportedAt === undefined ? null : JSON.stringify(v.reportedAt),
      ],
    };
  } catch (error) {
    return new InvalidArgument(
      `${refKey(commit.ref)}: commit is not serialisable as JSON: ${(error as Error).message}`,
    );
  }
}

/**
 * The embedded durable {@link EventStore} on SQLite (better-sqlite3). Construct it to open (and
 * create or migrate) the database; call `close()` when done.
 *
 * The constructor throws `Unavailable` when the file cannot be opened or migrated (with the SQLite
 * error as cause), and `FailedPrecondition` when the database was written by a newer Doppel.
 */
export class SqliteEventStore implements EventStore {
  readonly #db: Database.Database;
  readonly #s: Statements;
  readonly #label: string;
  readonly #commitGroup: (
    commits: readonly (EncodedCommit | InvalidArgument)[],
  ) => (DoppelError | undefined)[];
  readonly #appendSamples: (samples: readonly TelemetrySample[]) => void;
  readonly #load: (ref: TwinRef) => LoadedTwin;
  readonly #claimAndLoad: (ref: TwinRef, epoch: number) => LoadedTwin;
  readonly #scanSliceMs: number;
  #closed = false;

  constructor(options: SqliteStoreOptions) {
    this.#label = `sqlite store ${options.path}`;
    const slice = options.scanSliceMs ?? DEFAULT_SCAN_SLICE_MS;
    this.#scanSliceMs = slice >= 0 ? slice : DEFAULT_SCAN_SLICE_MS; // Infinity: one go
    let db: Database.Database;
    try {
      db = new Database(options.path);
    } catch (error) {
      throw new Unavailable(`${this.#label}: cannot open: ${(error as Error).message}`, undefined, {
        cause: error,
      });
    }
    try {
      // WAL: readers never block the writer, and a commit is one sequential append (+ one fsync).
      db.pragma("journal_mode = WAL");
      db.pragma(options.synchronous === "normal" ? "synchronous = NORMAL" : "synchronous = FULL");
      const busyTimeout = options.busyTimeoutMs ?? 5000;
      db.pragma(
        `busy_timeout = ${Number.isFinite(busyTimeout) ? Math.max(0, Math.trunc(busyTimeout)) : 5000}`,
      );
      migrate(db, this.#label);
      this.#s = prepareStatements(db);
    } catch (error) {
      db.close();
      if (error instanceof DoppelError) throw error;
      throw new Unavailable(`${this.#label}: cannot open: ${(error as Error).message}`, undefined, {
        cause: error,
      });
    }
    this.#db = db;
    this.#commitGroup = db.transaction((commits: readonly (EncodedCommit | InvalidArgument)[]) =>
      commits.map((commit) => (commit instanceof InvalidArgument ? commit : this.#commitOne(commit))),
    ).immediate;
    this.#appendSamples = db.transaction((samples: readonly TelemetrySample[]) => {
      for (const sample of samples) {
        const { type, id } = sample.ref;
        if (sample.key !== undefined) {
          const no = sampleNumberOf(sample.key);
          this.#s.insertKeyedTelemetry.run(type, id, sample.at, no, JSON.stringify(sample.metrics));
        } else {
          this.#s.insertTelemetry.run(
            type,
            id,
            sample.at,
            type,
            id,
            sample.at,
            JSON.stringify(sample.metrics),
          );
        }
      }
    }).immediate;
    this.#claimAndLoad = db.transaction((ref: TwinRef, epoch: number): LoadedTwin => {
      const twinEpoch = this.#twinEpoch(ref.type, ref.id);
      if (twinEpoch > epoch) throw staleClaimError(ref, epoch, twinEpoch);
      // Claimed or written at this epoch already: nothing to write (as LoadOptions.claimEpoch says).
      if (twinEpoch < epoch) this.#s.setClaim.run(ref.type, ref.id, epoch);
      return this.#loadNow(ref);
    }).immediate;
    // One read transaction, so the snapshot, events and quarantine mark are one consistent picture.
    this.#load = db.transaction((ref: TwinRef): LoadedTwin => this.#loadNow(ref)).deferred;
  }

  #loadNow(ref: TwinRef): LoadedTwin {
    const row = this.#s.snapshot.get(ref.type, ref.id);
    const snapshot = row && decodeSnapshot(row);
    const events = this.#s.eventsAfter.all(ref.type, ref.id, snapshot?.seq ?? 0, -1).map(decodeEvent);
    const quarantine = this.#s.quarantineReason.get(ref.type, ref.id)?.reason;
    return { snapshot, events, quarantine };
  }

  /**
   * Writes the whole group in ONE immediate transaction (one fsync). Per commit: a writer whose
   * lease epoch is older than the twin's newest event's is refused (`Unavailable`, not-owner;
   * the fence, checked inside the transaction); a log that does not end at `expectedSeq` means a
   * conflict, unless the event at `expectedSeq + 1` carries this
   * commit's id (a retry of a commit already written: success, nothing written again). A
   * conflicting commit writes nothing and the others proceed. A SQLite failure rolls back the
   * whole group and rejects with `Unavailable`.
   */
  async commit(commits: readonly TwinCommit[]): Promise<(DoppelError | undefined)[]> {
    if (commits.length === 0) return this.#guard("commit", () => []);
    const encoded = commits.map(encodeCommit);
    return this.#guard("commit", () => this.#commitGroup(encoded));
  }

  #commitOne({ commit, events, view }: EncodedCommit): DoppelError | undefined {
    const { type, id } = commit.ref;
    // Fencing, inside the write transaction: a writer whose lease epoch is older than the
    // epoch of the twin's newest event or of its claim must not append, however late its commit arrives.
    const twinEpoch = this.#twinEpoch(type, id);
    if (commit.events.length > 0 && twinEpoch > commitEpoch(commit))
      return staleEpochError(commit, twinEpoch);
    const last = this.#s.lastSeq.get(type, id)?.last ?? 0;
    if (last !== commit.expectedSeq) {
      const first = commit.events[0];
      const existing = first && this.#s.commitIdAt.get(type, id, commit.expectedSeq + 1);
      if (first && existing && existing.commit_id === first.commitId) return undefined;
      return new ConcurrencyConflict(
        `${refKey(commit.ref)}: expected the log to end at ${commit.expectedSeq}, but it ends at ${last}`,
        { expectedSeq: commit.expectedSeq, actualSeq: last },
      );
    }
    // The creation is counted in the same transaction as the append: exact, whatever the timing.
    const creator = creatorOf(commit);
    if (creator) {
      const used = this.#s.twinsCreated.get(creator.principal)?.created ?? 0;
      if (used >= creator.maxTwins) return quotaExceededError(commit, creator, used);
      this.#s.countCreation.run(creator.principal);
    }
    for (const params of events) this.#s.insertEvent.run(type, id, ...params);
    this.#s.upsertView.run(type, id, ...view);
    for (const name of commit.reminders.clear) this.#s.clearReminder.run(type, id, name);
    for (const r of commit.reminders.set) this.#s.setReminder.run(type, id, r.name, r.shard, r.dueAt);
    return undefined;
  }

  /** The newest lease epoch that claimed or wrote the twin (0: none). */
  #twinEpoch(type: string, id: string): number {
    return Math.max(
      this.#s.lastEpoch.get(type, id)?.epoch ?? 0,
      this.#s.claimEpoch.get(type, id)?.epoch ?? 0,
    );
  }

  /**
   * Loads in one read transaction; with `claimEpoch`, claims first in the same immediate
   * transaction (the check and the claim are atomic with every commit), unless the twin is
   * claimed or written at that epoch already (then nothing is written).
   */
  async loadTwin(ref: TwinRef, options: LoadOptions = {}): Promise<LoadedTwin> {
    const { claimEpoch } = options;
    return this.#guard("loadTwin", () =>
      claimEpoch === undefined || this.#twinEpoch(ref.type, ref.id) === claimEpoch
        ? this.#load(ref)
        : this.#claimAndLoad(ref, claimEpoch),
    );
  }

  async readEvents(ref: TwinRef, afterSeq: number, limit?: number): Promise<EventRecord[]> {
    return this.#guard("readEvents", () =>
      this.#s.eventsAfter.all(ref.type, ref.id, afterSeq, sqlLimit(limit)).map(decodeEvent),
    );
  }

  async writeSnapshot(ref: TwinRef, snapshot: TwinSnapshot): Promise<void> {
    this.#guard("writeSnapshot", () => {
      this.#s.upsertSnapshot.run(
        ref.type,
        ref.id,
        snapshot.seq,
        snapshot.at,
        snapshot.createdAt,
        JSON.stringify(snapshot.state),
        JSON.stringify(snapshot.reported),
        JSON.stringify(snapshot.desired),
        JSON.stringify(snapshot.reminders),
        JSON.stringify(snapshot.recent),
        encodeShadowMeta(snapshot),
      );
    });
  }

  async twinsCreated(principal: string): Promise<number> {
    return this.#guard("twinsCreated", () => this.#s.twinsCreated.get(principal)?.created ?? 0);
  }

  async readView(ref: TwinRef): Promise<TwinView | undefined> {
    return this.#guard("readView", () => {
      const row = this.#s.view.get(ref.type, ref.id);
      return row && decodeView(ref.type, row);
    });
  }

  /**
   * Pages by id (`twin_id > after`, an index range scan of at most {@link SCAN_CHUNK} rows per
   * statement), applying `match` in JS and reading further chunks until `limit` views match or
   * the type is exhausted. The token names the last id examined, so the next page does not re-read
   * rows this one already rejected.
   *
   * Incremental: after `scanSliceMs` of work the scan yields to the event loop and resumes after
   * the last id it examined (a fresh statement, so no statement stays open across the yield and
   * commits are never blocked by a query).
   */
  async queryViews(type: string, query: ViewQuery): Promise<ViewPage> {
    const start = this.#guard("queryViews", () => {
      const after = query.pageToken
        ? String(decodePageToken(query.pageToken, { after: "string" }).after)
        : "";
      const limit = Number.isFinite(query.limit) ? Math.floor(query.limit) : Number.MAX_SAFE_INTEGER;
      return { after, limit };
    });
    let after = start.after;
    const { limit } = start;
    const views: TwinView[] = [];
    if (!(limit > 0)) return { views };
    const { match } = query;
    for (;;) {
      const sliceEnd = performance.now() + this.#scanSliceMs;
      // One slice: whole chunks until the budget is spent; `page` is set once the query is answered.
      const page = this.#guard("queryViews", (): ViewPage | undefined => {
        for (;;) {
          const rows = this.#s.viewsAfter.all(type, after, SCAN_CHUNK);
          for (const row of rows) {
            // A row beyond a full page: there is more to read, so this page gets a token.
            if (views.length >= limit) return { views, nextPageToken: encodePageToken({ after }) };
            after = row.twin_id;
            const view = decodeView(type, row);
            if (!match || match(view)) views.push(view);
            if (performance.now() >= sliceEnd) return undefined;
          }
          if (rows.length < SCAN_CHUNK) return { views };
        }
      });
      if (page) return page;
      await yieldToEventLoop();
    }
  }

  async readHistory(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    return this.#guard("readHistory", () =>
      this.#s.history
        .all(
          ref.type,
          ref.id,
          range.fromVersion ?? -OPEN_END,
          range.toVersion ?? OPEN_END,
          range.since ?? -OPEN_END,
          range.until ?? OPEN_END,
          sqlLimit(range.limit),
        )
        .map(decodeEvent),
    );
  }

  async dueReminders(
    shards: readonly number[] | "all",
    until: number,
    limit: number,
  ): Promise<ReminderIndexEntry[]> {
    return this.#guard("dueReminders", () => {
      const rows =
        shards === "all"
          ? this.#s.dueAll.all(until, sqlLimit(limit))
          : this.#s.dueInShards.all(JSON.stringify(shards), until, sqlLimit(limit));
      return rows.map(decodeReminder);
    });
  }

  async earliestReminders(shards: readonly number[] | "all"): Promise<Map<number, number>> {
    return this.#guard("earliestReminders", () => {
      const rows =
        shards === "all" ? this.#s.earliestAll.all() : this.#s.earliestInShards.all(JSON.stringify(shards));
      return new Map(rows.map((row) => [row.shard, row.due_at]));
    });
  }

  async quarantine(ref: TwinRef, reason: string): Promise<void> {
    this.#guard("quarantine", () => {
      this.#s.setQuarantine.run(ref.type, ref.id, reason, Date.now());
    });
  }

  async release(ref: TwinRef): Promise<void> {
    this.#guard("release", () => {
      this.#s.clearQuarantine.run(ref.type, ref.id);
    });
  }

  /** Appends all samples in one transaction; samples of one twin at the same ms are all kept. */
  async appendTelemetry(samples: readonly TelemetrySample[]): Promise<void> {
    if (samples.length === 0) return this.#guard("appendTelemetry", () => undefined);
    this.#guard("appendTelemetry", () => this.#appendSamples(samples));
  }

  async readTelemetry(ref: TwinRef, range: TelemetryRange): Promise<TelemetrySample[]> {
    return this.#guard("readTelemetry", () =>
      this.#s.telemetry.all(ref.type, ref.id, range.since, range.until, sqlLimit(range.limit)).map((row) => ({
        ref: { type: ref.type, id: ref.id },
        at: row.at,
        metrics: parseObject(row.metrics) as Record<string, number>,
      })),
    );
  }

  /** Closes the database (checkpointing the WAL). Later calls reject with `Unavailable`; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#db.close();
    } catch (error) {
      throw this.#failure("close", error);
    }
  }

  /** Runs `body` against the open database, turning every failure into a typed error. */
  #guard<T>(operation: string, body: () => T): T {
    if (this.#closed) throw new Unavailable(`${this.#label} is closed`, { operation });
    try {
      return body();
    } catch (error) {
      throw this.#failure(operation, error);
    }
  }

  #failure(operation: string, error: unknown): DoppelError {
    if (error instanceof DoppelError) return error;
    if (error instanceof Database.SqliteError) {
      return new Unavailable(
        `${this.#label}: ${operation} failed: ${error.message} (${error.code})`,
        { operation, sqliteCode: error.code },
        { cause: error },
      );
    }
    if (
      this.#closed ||
      (error instanceof TypeError && /database connection is not open/i.test(error.message))
    ) {
      return new Unavailable(`${this.#label} is closed`, { operation }, { cause: error });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new Internal(`${this.#label}: ${operation} failed: ${message}`, { operation }, { cause: error });
  }
}

/** A sample number from an idempotency key: 2^32 + 48 bits of its SHA-256 (a safe integer). */
function sampleNumberOf(key: string): number {
  const digest = createHash("sha256").update(key).digest();
  return 2 ** 32 + digest.readUIntBE(0, 6);
}

function decodeSnapshot(row: SnapshotRow): TwinSnapshot {
  return {
    seq: row.seq,
    at: row.at,
    createdAt: row.created_at,
    state: parseObject(row.state),
    reported: parseObject(row.reported),
    desired: parseObject(row.desired),
    reminders: JSON.parse(row.reminders) as ReminderState[],
    recent: JSON.parse(row.recent) as string[],
    ...decodeShadowMeta(parseObject(row.shadow_meta)),
  };
}
