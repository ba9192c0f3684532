/**
 * In-memory {@link EventStore}: for unit tests and the test kit. Nothing survives the process.
 * It can be told to fail (`failNext`) so tests can exercise store outages.
 */

import { ConcurrencyConflict, type DoppelError, Unavailable } from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
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

/** What the store holds of one twin that has been written or claimed. */
interface StoredTwin {
  /** The event log: `log[i].seq === i + 1`. */
  readonly log: EventRecord[];
  /** The epoch the twin was last claimed at (see `LoadOptions.claimEpoch`; 0: never claimed). */
  claim: number;
  /**
   * The twin's last commit, whose view (projection) is the twin's view, once it has events. Kept
   * rather than its view: a commit may build its view only when it is read (the engine's do), so
   * a twin written often and read seldom builds few.
   */
  last: TwinCommit | undefined;
}

export class MemoryEventStore implements EventStore {
  /**
   * Twins by type, then id: a commit finds everything it touches in one entry, by strings it
   * already holds (no `type/id` key built and hashed per commit).
   */
  readonly #twins = new Map<string, Map<string, StoredTwin>>();
  readonly #snapshots = new Map<string, TwinSnapshot>();
  readonly #reminders = new Map<string, ReminderIndexEntry>();
  readonly #quarantine = new Map<string, string>();
  readonly #telemetry = new Map<string, TelemetrySample[]>();
  /** Twins created per principal under a quota (see `TwinCommit.creator`). */
  readonly #created = new Map<string, number>();
  #failures = 0;
  #closed = false;

  /** Makes the next `count` store operations fail with `Unavailable` (fault injection for tests). */
  failNext(count = 1): void {
    this.#failures = count;
  }

  #gate(): void {
    if (this.#closed) throw new Unavailable("memory store is closed");
    if (this.#failures > 0) {
      this.#failures--;
      throw new Unavailable("memory store: injected failure");
    }
  }

  async commit(commits: readonly TwinCommit[]): Promise<(DoppelError | undefined)[]> {
    this.#gate();
    return commits.map((commit) => this.#commitOne(commit));
  }

  #commitOne(commit: TwinCommit): DoppelError | undefined {
    // Events that do not continue the log at expectedSeq + 1 would break the invariant
    // `log[i].seq === i + 1` that every read here slices by.
    const shapeError = commitShapeError(commit);
    if (shapeError) return shapeError;
    const twin = this.#twin(commit.ref);
    const log = twin?.log;
    const length = log?.length ?? 0;
    const first = commit.events[0];
    // Fencing: a writer whose lease epoch is older than the twin's newest or its claim must not append.
    const twinEpoch = twin ? this.#twinEpoch(twin) : 0;
    if (first && twinEpoch > commitEpoch(commit)) return staleEpochError(commit, twinEpoch);
    if (length !== commit.expectedSeq) {
      const existing = log?.[commit.expectedSeq];
      if (first && existing && existing.commitId === first.commitId) return undefined;
      return new ConcurrencyConflict(
        `${refKey(commit.ref)}: expected the log to end at ${commit.expectedSeq}, but it ends at ${length}`,
        { expectedSeq: commit.expectedSeq, actualSeq: length },
      );
    }
    const creator = creatorOf(commit);
    if (creator) {
      const used = this.#created.get(creator.principal) ?? 0;
      if (used >= creator.maxTwins) return quotaExceededError(commit, creator, used);
      this.#created.set(creator.principal, used + 1);
    }
    const stored = twin ?? this.#add(commit.ref);
    for (const event of commit.events) stored.log.push(event);
    stored.last = commit;
    const { clear, set } = commit.reminders;
    if (clear.length > 0 || set.length > 0) {
      const key = refKey(commit.ref);
      for (const name of clear) this.#reminders.delete(`${key}#${name}`);
      for (const entry of set) this.#reminders.set(`${key}#${entry.name}`, entry);
    }
    return undefined;
  }

  #twin(ref: TwinRef): StoredTwin | undefined {
    return this.#twins.get(ref.type)?.get(ref.id);
  }

  #add(ref: TwinRef): StoredTwin {
    let byId = this.#twins.get(ref.type);
    if (!byId) {
      byId = new Map();
      this.#twins.set(ref.type, byId);
    }
    const twin: StoredTwin = { log: [], claim: 0, last: undefined };
    byId.set(ref.id, twin);
    return twin;
  }

  /** The newest lease epoch that wrote or claimed the twin (what fencing compares a writer with). */
  #twinEpoch(twin: StoredTwin): number {
    const last = twin.log[twin.log.length - 1];
    return Math.max(last?.writer.epoch ?? 0, twin.claim);
  }

  async twinsCreated(principal: string): Promise<number> {
    this.#gate();
    return this.#created.get(principal) ?? 0;
  }

  async loadTwin(ref: TwinRef, options: LoadOptions = {}): Promise<LoadedTwin> {
    this.#gate();
    const key = refKey(ref);
    const snapshot = this.#snapshots.get(key);
    let twin = this.#twin(ref);
    const { claimEpoch } = options;
    if (claimEpoch !== undefined) {
      const twinEpoch = twin ? this.#twinEpoch(twin) : 0;
      if (twinEpoch > claimEpoch) throw staleClaimError(ref, claimEpoch, twinEpoch);
      twin ??= this.#add(ref);
      twin.claim = claimEpoch;
    }
    const events = twin ? twin.log.slice(snapshot?.seq ?? 0) : [];
    return { snapshot, events, quarantine: this.#quarantine.get(key) };
  }

  async readEvents(ref: TwinRef, afterSeq: number, limit = Number.MAX_SAFE_INTEGER): Promise<EventRecord[]> {
    this.#gate();
    return (this.#twin(ref)?.log ?? []).slice(afterSeq, afterSeq + limit);
  }

  async writeSnapshot(ref: TwinRef, snapshot: TwinSnapshot): Promise<void> {
    this.#gate();
    const key = refKey(ref);
    const current = this.#snapshots.get(key);
    if (!current || current.seq < snapshot.seq) this.#snapshots.set(key, snapshot);
  }

  async readView(ref: TwinRef): Promise<TwinView | undefined> {
    this.#gate();
    return this.#twin(ref)?.last?.view;
  }

  async queryViews(type: string, query: ViewQuery): Promise<ViewPage> {
    this.#gate();
    const after = query.pageToken
      ? String(decodePageToken(query.pageToken, { after: "string" }).after)
      : undefined;
    const byId = this.#twins.get(type);
    const ids = [...(byId?.entries() ?? [])]
      .filter(([, twin]) => twin.last !== undefined)
      .map(([id]) => id)
      .sort();
    const views: TwinView[] = [];
    let index = after === undefined ? 0 : ids.findIndex((id) => id > after);
    if (index < 0) index = ids.length;
    for (; index < ids.length && views.length < query.limit; index++) {
      const view = byId?.get(ids[index]!)?.last?.view;
      if (view && (!query.match || query.match(view))) views.push(view);
    }
    const last = views.at(-1);
    return index < ids.length && last
      ? { views, nextPageToken: encodePageToken({ after: last.id }) }
      : { views };
  }

  async readHistory(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    this.#gate();
    return (this.#twin(ref)?.log ?? [])
      .filter(
        (e) =>
          (range.fromVersion === undefined || e.seq >= range.fromVersion) &&
          (range.toVersion === undefined || e.seq <= range.toVersion) &&
          (range.since === undefined || e.at >= range.since) &&
          (range.until === undefined || e.at <= range.until),
      )
      .slice(0, range.limit);
  }

  async dueReminders(
    shards: readonly number[] | "all",
    until: number,
    limit: number,
  ): Promise<ReminderIndexEntry[]> {
    this.#gate();
    const wanted = shards === "all" ? undefined : new Set(shards);
    // Only the due entries are copied (not every entry, on every poll).
    const due: ReminderIndexEntry[] = [];
    for (const r of this.#reminders.values())
      if (r.dueAt <= until && (!wanted || wanted.has(r.shard))) due.push(r);
    return due.sort((a, b) => a.dueAt - b.dueAt).slice(0, limit);
  }

  async earliestReminders(shards: readonly number[] | "all"): Promise<Map<number, number>> {
    this.#gate();
    const wanted = shards === "all" ? undefined : new Set(shards);
    const earliest = new Map<number, number>();
    for (const { shard, dueAt } of this.#reminders.values()) {
      if (wanted && !wanted.has(shard)) continue;
      const known = earliest.get(shard);
      if (known === undefined || dueAt < known) earliest.set(shard, dueAt);
    }
    return earliest;
  }

  async quarantine(ref: TwinRef, reason: string): Promise<void> {
    this.#gate();
    this.#quarantine.set(refKey(ref), reason);
  }

  async release(ref: TwinRef): Promise<void> {
    this.#gate();
    this.#quarantine.delete(refKey(ref));
  }

  async appendTelemetry(samples: readonly TelemetrySample[]): Promise<void> {
    this.#gate();
    for (const sample of samples) {
      const key = refKey(sample.ref);
      const series = this.#telemetry.get(key) ?? [];
      if (sample.key !== undefined && series.some((s) => s.key === sample.key && s.at === sample.at))
        continue;
      series.push(sample);
      this.#telemetry.set(key, series);
    }
  }

  async readTelemetry(ref: TwinRef, range: TelemetryRange): Promise<TelemetrySample[]> {
    this.#gate();
    return (this.#telemetry.get(refKey(ref)) ?? [])
      .filter((s) => s.at >= range.since && s.at < range.until)
      .sort((a, b) => a.at - b.at)
      .slice(0, range.limit);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
