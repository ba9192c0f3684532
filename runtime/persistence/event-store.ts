/**
 * `EventStore`: where twins persist. Implementations: in-memory (tests), SQLite (the embedded
 * default), Cassandra (production). All must pass the contract suite in
 * `test/persistence/event-store-contract.ts`.
 *
 * Failures: methods reject with `Unavailable` when the backing store cannot be reached (the caller
 * may retry), `InvalidArgument` for a malformed page token, and never with anything untyped.
 */
import type { DoppelError } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type {
  EventRecord,
  HistoryRange,
  ReminderIndexEntry,
  TelemetrySample,
  TwinCommit,
  TwinSnapshot,
  TwinView,
  ViewPage,
} from "../core/records.ts";

/** What activation needs to rebuild a twin: its latest snapshot and the events after it. */
export interface LoadedTwin {
  readonly snapshot: TwinSnapshot | undefined;
  /** Events after the snapshot (or from the start), ascending. */
  readonly events: readonly EventRecord[];
  /** Set when the twin is quarantined: the reason. */
  readonly quarantine: string | undefined;
}

/** Which views a query returns: one type, those `match` accepts, ordered by id. */
export interface ViewQuery {
  readonly match?: (view: TwinView) => boolean;
  readonly limit: number;
  readonly pageToken?: string;
}

/** A slice of a twin's telemetry. `since` inclusive, `until` exclusive, epoch ms. */
export interface TelemetryRange {
  readonly since: number;
  readonly until: number;
  readonly limit: number;
}

/** Options of {@link EventStore.loadTwin}. */
export interface LoadOptions {
  /**
   * Claims the twin for a writer at this lease epoch before returning (fencing at activation):
   * atomically with a check that no newer epoch has claimed or written the twin, the twin's
   * fence epoch is raised to `claimEpoch`, so from then on every commit of an older epoch is
   * refused (`stale-epoch`) even before this writer's first commit. The state returned is the
   * twin's state at the claim (a commit that landed before it is included). Rejects with
   * `Unavailable` (`retry: "not-owner"`, `reason: "stale-epoch"`) when a newer epoch has claimed
   * or written the twin. Writes nothing when the twin is already claimed at `claimEpoch`.
   */
  readonly claimEpoch?: number;
}

/** Options of {@link EventStore.commit}. */
export interface CommitOptions {
  /**
   * Checked for each commit at the last moment before its write is sent, after whatever the
   * store does first (Cassandra's conflict-check read, waiting for a request slot): an error
   * refuses that commit unwritten and is its result. A cluster node passes its lease check, so a
   * write held up past the node's lease (a paused process, a slow store) is refused rather than
   * landing under a lease another node holds by then. Stores that write without waiting between
   * the call and the write (SQLite, memory) may ignore it: the caller's own check right before
   * the call covers them.
   */
  readonly fence?: (commit: TwinCommit) => DoppelError | undefined;
}

export interface EventStore {
  /**
   * Writes each commit atomically for its twin (events + view + reminder index). Commits of
   * different twins are independent: the result has one entry per commit, `undefined` when it
   * was written, or the error: `Unavailable` with `retry: "not-owner"` and `reason:
   * "stale-epoch"` when the commit's writer epoch is older than the epoch of the twin's newest
   * event or of its claim (see {@link LoadOptions.claimEpoch}) (fencing: checked atomically with the append, so a write that arrives late, after a
   * newer owner wrote, is refused whatever the timing), `ConcurrencyConflict` when the twin's log does not end at
   * `expectedSeq` (another writer got there first), `InvalidArgument` when the commit is malformed
   * (its events do not continue from `expectedSeq`), the `fence`'s error when it refused the
   * commit, `QuotaExceeded` when the commit creates the twin and its `creator` has created
   * `maxTwins` twins already (see {@link TwinCommit.creator}; each creation is counted once, durably,
   * and shared by every node on the store). When the store itself fails, the whole call rejects with `Unavailable` and none of it
   * may be assumed written. Retrying a commit whose events are already stored with the same
   * commit ids succeeds without writing anything twice. Callers never put two commits of one twin
   * in one call.
   */
  commit(commits: readonly TwinCommit[], options?: CommitOptions): Promise<(DoppelError | undefined)[]>;

  /** Loads a twin for activation: latest snapshot, later events, quarantine mark; claims it when asked. */
  loadTwin(ref: TwinRef, options?: LoadOptions): Promise<LoadedTwin>;

  /** Events with `seq > afterSeq`, ascending, at most `limit`. */
  readEvents(ref: TwinRef, afterSeq: number, limit?: number): Promise<EventRecord[]>;

  /** Stores a snapshot (replacing an older one; an older snapshot never replaces a newer one). */
  writeSnapshot(ref: TwinRef, snapshot: TwinSnapshot): Promise<void>;

  /** The latest view of one twin; `undefined` if the twin has never persisted an event. */
  readView(ref: TwinRef): Promise<TwinView | undefined>;

  /** Pages through the views of one type in id order. */
  queryViews(type: string, query: ViewQuery): Promise<ViewPage>;

  /** Events of one twin within a version and/or time range, ascending, at most `range.limit`. */
  readHistory(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]>;

  /** Reminder index entries due at or before `until` in the given shards (`"all"`: every shard). */
  dueReminders(
    shards: readonly number[] | "all",
    until: number,
    limit: number,
  ): Promise<ReminderIndexEntry[]>;

  /**
   * The earliest due time in the reminder index of each given shard (`"all"`: every shard);
   * a shard without entries is absent. Lets a reminder poll skip shards with nothing due soon.
   */
  earliestReminders(shards: readonly number[] | "all"): Promise<Map<number, number>>;

  /** Marks a twin quarantined (it refuses work until released) with a reason. */
  quarantine(ref: TwinRef, reason: string): Promise<void>;

  /** Lifts a quarantine. */
  release(ref: TwinRef): Promise<void>;

  /** Appends telemetry samples (high-rate numeric series, kept apart from state events). */
  appendTelemetry(samples: readonly TelemetrySample[]): Promise<void>;

  /** Telemetry samples of one twin in a time range, ascending, at most `range.limit`. */
  readTelemetry(ref: TwinRef, range: TelemetryRange): Promise<TelemetrySample[]>;

  /**
   * How many twins `principal` (a `principalLabel`) has created under a quota: the count kept by
   * commits with a {@link TwinCommit.creator}; 0 for a principal that never created one.
   */
  twinsCreated(principal: string): Promise<number>;

  /** Releases connections and files. */
  close(): Promise<void>;
}
