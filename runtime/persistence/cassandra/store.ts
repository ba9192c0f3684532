/**
 * `CassandraEventStore`: the production {@link EventStore} on Apache Cassandra (cassandra-driver,
 * native protocol v4+). See `docs/cassandra.md` for the whole picture; in short:
 *
 * - **Schema** created and migrated by the store when it opens (`schema.ts`, `migrate.ts`);
 *   keyspace, replication and the bucketing layout are configurable (`options.ts`).
 * - **Commit**, fenced: per twin, ONE lightweight transaction on the twin's head (`head_seq`,
 *   `head_epoch` in its `twins` partition) is the commit point: it moves the head from
 *   `expectedSeq` only if it is still there and no newer lease epoch has written. Then ONE logged
 *   batch applies the events, view, reminder index and bucket index (`commit-plan.ts`,
 *   `commit-writer.ts`). The plan is recorded with the head, so a writer that dies between the
 *   two is completed by whoever loads the twin next. Twins of one `commit` call are written
 *   concurrently, bounded by `maxConcurrentRequests`; commits of one twin are serialised.
 * - **Refusals**: an older lease epoch than the twin's newest is refused with `Unavailable`
 *   (`retry: "not-owner"`, `reason: "stale-epoch"`), a stale `expectedSeq` with
 *   `ConcurrencyConflict`; neither writes anything. Two writers can no longer both append at one
 *   seq; a fork left by schema-1 data (a read-then-write commit, which could race) is still
 *   caught on replay: `loadTwin` reports the twin quarantined and records it,
 *   `readEvents`/`readHistory` fail with `ConcurrencyConflict`. Never merged.
 * - **Idempotent**: a retried commit (same commit ids) is recognised and writes nothing; every
 *   statement is idempotent, so the driver may retry it.
 *
 * Failures: `Unavailable` when the cluster cannot answer (the caller may retry; a failed commit
 * call may have been partly applied, per twin atomically), `InvalidArgument` for a malformed
 * commit or page token, `FailedPrecondition` for refused credentials or a keyspace whose schema or
 * layout does not match, `Internal` for a bug. Nothing untyped escapes.
 */

import { ConcurrencyConflict, type DoppelError, InvalidArgument, Unavailable } from "../../core/errors.ts";
import { refKey, type TwinRef } from "../../core/ids.ts";
import { present } from "../../core/present.ts";
import type {
  EventRecord,
  HistoryRange,
  ReminderIndexEntry,
  TelemetrySample,
  TwinCommit,
  TwinSnapshot,
  TwinView,
  ViewPage,
} from "../../core/records.ts";
import {
  commitEpoch,
  commitShapeError,
  creatorOf,
  staleClaimError,
  staleEpochError,
} from "../commit-check.ts";
import type {
  CommitOptions,
  EventStore,
  LoadedTwin,
  LoadOptions,
  TelemetryRange,
  ViewQuery,
} from "../event-store.ts";
import { eventBucket, viewBucket } from "./buckets.ts";
import { type CommitPlan, decodeStaged, planCommit, type ReminderRow } from "./commit-plan.ts";
import { CommitWriter, headSeen } from "./commit-writer.ts";
import { describeFork, type Fork, forkConflict, judgeAppend, type RowIdentity } from "./conflicts.ts";
import { CreationCounter } from "./creations.ts";
import { toDoppelError } from "./failures.ts";
import { LogReader, type LogSlice } from "./log-reader.ts";
import { type Layout, migrate, settleLayout } from "./migrate.ts";
import {
  type CassandraSettingsInput,
  type CassandraStoreConfig,
  compileCassandraSettings,
} from "./options.ts";
import { dueReminders, earliestReminders } from "./reminder-query.ts";
import { decodeSnapshot, decodeView, snapshotParams, toNumber } from "./rows.ts";
import { SerialQueues } from "./serial.ts";
import { CassandraSession, type Row, type SendGuard, type SessionHooks } from "./session.ts";
import { type Statements, statementsFor } from "./statements.ts";
import { TelemetrySeries } from "./telemetry.ts";
import { queryViews } from "./view-query.ts";

/** Start-up callbacks (e.g. to log retries of an unreachable cluster), and one measuring switch. */
export interface CassandraStoreHooks extends SessionHooks {
  /**
   * Only for `bench:store`, which measures what the fence costs (not a store setting: the node's
   * configuration cannot reach it). `true`: the schema-1 commit (a read of the log's tail, then the
   * plain apply), which a paused writer can fork; never run a cluster with it. Default: every commit
   * goes through the twin head's lightweight transaction (see `commit-writer.ts`).
   */
  readonly unfencedCommitsToMeasureTheFence?: boolean;
}

const OPEN_END = Number.MAX_SAFE_INTEGER;

/** Attempts of a claim at activation whose head moved between the load and the claim (each reloads). */
const CLAIM_ATTEMPTS = 8;
/** What the commit point answers for a commit found already committed (a retry): it wrote nothing now. */
const RETRIED = Symbol("retried");
/** Bound of the hint set of twins claimed with an empty head (see `#claimedEmpty`). */
const CLAIMED_EMPTY_HINTS = 65_536;

export class CassandraEventStore implements EventStore {
  readonly #session: CassandraSession;
  readonly #config: CassandraStoreConfig;
  readonly #s: Statements;
  readonly #layout: Layout;
  readonly #writer: CommitWriter;
  readonly #creations: CreationCounter;
  readonly #log: LogReader;
  readonly #telemetry: TelemetrySeries;
  /** The last commit queued per twin: commits of one twin run one after another. */
  readonly #queues = new SerialQueues();
  /**
   * Twins this store claimed at activation without a recorded head (a new twin: the claim set the
   * head at 0), so their first commit advances that head instead of opening one. Only a hint
   * (bounded; a wrong guess costs one more round trip, never correctness).
   */
  readonly #claimedEmpty = new Set<string>();
  /** See {@link CassandraStoreHooks.unfencedCommitsToMeasureTheFence}. */
  readonly #unfenced: boolean;

  private constructor(
    session: CassandraSession,
    config: CassandraStoreConfig,
    s: Statements,
    layout: Layout,
    unfenced: boolean,
  ) {
    this.#unfenced = unfenced;
    this.#session = session;
    this.#config = config;
    this.#s = s;
    this.#layout = layout;
    this.#writer = new CommitWriter(session, s, config.maxBatchBytes);
    this.#creations = new CreationCounter(session, s);
    this.#log = new LogReader(session, s, layout, config.historyClockSkew);
    this.#telemetry = new TelemetrySeries(session, s, layout.telemetryWindowMs);
  }

  /**
   * Opens a store from settings as a user writes them (see `options.ts`): validates them
   * (`InvalidArgument`), connects (retrying an unreachable cluster for `startupRetry`, then
   * `Unavailable` naming the contact points), creates or migrates the schema and settles the
   * layout (`FailedPrecondition` on a mismatch).
   */
  static async open(
    settings: CassandraSettingsInput,
    hooks: CassandraStoreHooks = {},
  ): Promise<CassandraEventStore> {
    return CassandraEventStore.openConfigured(compileCassandraSettings(settings), hooks);
  }

  /** Like {@link open}, from already compiled settings (the node's configuration). */
  static async openConfigured(
    config: CassandraStoreConfig,
    hooks: CassandraStoreHooks = {},
  ): Promise<CassandraEventStore> {
    const session = await CassandraSession.connect(config, hooks);
    try {
      const s = statementsFor(config.keyspace);
      await migrate(session, config, s);
      const layout = await settleLayout(session, config, s);
      return new CassandraEventStore(
        session,
        config,
        s,
        layout,
        hooks.unfencedCommitsToMeasureTheFence === true,
      );
    } catch (error) {
      await session.close().catch(() => {});
      throw toDoppelError(error, session.label, "open");
    }
  }

  /** The keyspace's bucketing layout. */
  get layout(): Layout {
    return this.#layout;
  }

  /** Names the cluster and keyspace (used in every error message). */
  get label(): string {
    return this.#session.label;
  }

  /**
   * Writes each commit atomically for its twin (see the module comment). Per commit: `undefined`,
   * `ConcurrencyConflict` or `InvalidArgument`. If the cluster fails for any commit, the call
   * rejects with `Unavailable` once every commit of it has settled.
   */
  async commit(
    commits: readonly TwinCommit[],
    options: CommitOptions = {},
  ): Promise<(DoppelError | undefined)[]> {
    return this.#guard("commit", async () => {
      const results: (DoppelError | undefined)[] = commits.map(() => undefined);
      let failure: DoppelError | undefined;
      await Promise.all(
        commits.map((commit, i) =>
          this.#serial(refKey(commit.ref), () => this.#commitOne(commit, options.fence)).then(
            (result) => {
              results[i] = result;
            },
            (error: unknown) => {
              failure ??= toDoppelError(error, this.label, "commit");
            },
          ),
        ),
      );
      if (failure) throw failure;
      return results;
    });
  }

  async #commitOne(
    commit: TwinCommit,
    fence: CommitOptions["fence"] | undefined,
  ): Promise<DoppelError | undefined> {
    const shapeError = commitShapeError(commit);
    if (shapeError) return shapeError;
    const { ref, expectedSeq } = commit;
    const first = commit.events[0]?.commitId;
    const touchesReminders = commit.reminders.set.length + commit.reminders.clear.length > 0;
    // The fenced path has no read before its commit point; the other one reads the log's tail.
    const fenced = !this.#unfenced && commit.events.length > 0;
    const [head, reminderRows] = await Promise.all([
      fenced ? undefined : this.#readHead(ref, expectedSeq),
      touchesReminders ? this.#reminderRows(ref) : new Map<string, ReminderRow>(),
    ]);
    if (head) {
      const verdict = judgeAppend(refKey(ref), head, expectedSeq, first);
      if (verdict.kind === "retried") return undefined;
      if (verdict.kind === "conflict") return verdict.error;
    }
    let plan: ReturnType<typeof planCommit>;
    try {
      plan = planCommit(commit, this.#layout, reminderRows);
    } catch (error) {
      if (error instanceof InvalidArgument) return error;
      throw error;
    }
    // The fence runs once more right before the write is sent: the work above, and waiting for a
    // request slot, may have taken longer than the writer's lease. (It cannot stop a request the
    // driver has already sent; the commit point below can.)
    let refusal: DoppelError | undefined;
    const beforeSend = fence
      ? () => {
          refusal = fence(commit);
          if (refusal) throw refusal;
        }
      : undefined;
    // A creation under a quota is counted first (its own lightweight transaction) and given back
    // when the commit definitely did not create the twin (see creations.ts).
    const creator = creatorOf(commit);
    if (creator) {
      const over = await this.#creations.reserve(commit, creator);
      if (over) {
        // A retry of this very creation, made when its first attempt's answer was lost, succeeds.
        const verdict = judgeAppend(refKey(ref), await this.#readHead(ref, expectedSeq), expectedSeq, first);
        if (verdict.kind === "retried") return undefined;
        return verdict.kind === "conflict" ? verdict.error : over;
      }
    }
    let result: DoppelError | undefined | typeof RETRIED;
    try {
      if (fenced) result = await this.#fencedCommit(commit, plan, beforeSend);
      else {
        await this.#writer.apply(plan, beforeSend);
        result = undefined;
      }
    } catch (error) {
      if (refusal !== undefined && error === refusal) result = refusal;
      else throw error;
    }
    if (creator && result !== undefined) await this.#creations.release(creator.principal);
    return result === RETRIED ? undefined : result;
  }

  /**
   * The commit point (the head's lightweight transaction, see `commit-writer.ts`), then the
   * apply. A refused commit point is judged: a stale lease epoch, this very commit already
   * committed (a retry), or a conflict.
   */
  async #fencedCommit(
    commit: TwinCommit,
    plan: CommitPlan,
    beforeSend: SendGuard | undefined,
  ): Promise<DoppelError | undefined | typeof RETRIED> {
    const { ref, expectedSeq } = commit;
    const first = commit.events[0]?.commitId;
    const last = expectedSeq + commit.events.length;
    const epoch = commitEpoch(commit);
    const claim = (open: boolean) =>
      this.#writer.claimHead(ref, plan, expectedSeq, last, epoch, first, open, beforeSend);
    // A twin's first commit opens its head, unless the activation's claim set one at 0.
    const open = expectedSeq === 0 && !this.#claimedEmpty.delete(refKey(ref));
    let outcome = await claim(open);
    if (!outcome.applied && open && outcome.head.seq === 0) outcome = await claim(false);
    if (!outcome.applied && outcome.head.seq === undefined && !open) {
      // No head recorded: a log written by schema 1 (or a commit at a seq the twin never reached).
      // Judge by the log's tail, then set the head where none is (one writer wins that, too).
      const verdict = judgeAppend(refKey(ref), await this.#readHead(ref, expectedSeq), expectedSeq, first);
      if (verdict.kind === "retried") return RETRIED;
      if (verdict.kind === "conflict") return verdict.error;
      outcome = await claim(true);
    }
    if (outcome.applied) {
      await this.#writer.applyCommitted(plan);
      return undefined;
    }
    // The server answers a refused transaction with the columns of its condition; the head's
    // epoch is read when the condition did not name it.
    const row = outcome.head.epoch === undefined ? await this.#twinRow(ref, this.#s.twinStatus) : undefined;
    const head = row ? headSeen(row) : outcome.head;
    if (head.epoch !== undefined && head.epoch > epoch) return staleEpochError(commit, head.epoch);
    // Refused at an epoch this writer may use: the head moved on. Either this commit already
    // passed its commit point (a retry; make sure it is applied) or another writer got there first.
    const staged = (row ?? (await this.#twinRow(ref, this.#s.twinStatus)))?.["staged_commit"];
    if (head.seq === last && typeof staged === "string") {
      const recorded = decodeStaged(staged, this.#s);
      if (recorded.expectedSeq === expectedSeq && recorded.firstCommitId === first) {
        await this.#writer.applyCommitted(plan);
        return RETRIED;
      }
    }
    const verdict = judgeAppend(refKey(ref), await this.#readHead(ref, expectedSeq), expectedSeq, first);
    if (verdict.kind === "retried") return RETRIED;
    if (verdict.kind === "conflict") return verdict.error;
    return new ConcurrencyConflict(
      `${refKey(ref)}: expected the log to end at ${expectedSeq}, but its head is at ${head.seq ?? "none"}`,
      { expectedSeq, actualSeq: head.seq },
    );
  }

  /** Rows with `seq >= expectedSeq` in the partitions of `expectedSeq` and `expectedSeq + 1`. */
  readonly #readHead = async (ref: TwinRef, expectedSeq: number): Promise<RowIdentity[]> => {
    const size = this.#layout.eventsPerBucket;
    const buckets = new Set([eventBucket(expectedSeq + 1, size)]);
    if (expectedSeq >= 1) buckets.add(eventBucket(expectedSeq, size));
    const reads = [...buckets].map(async (bucket) => {
      const result = await this.#session.execute(
        "check log head",
        { query: this.#s.headRows, params: [ref.type, ref.id, bucket, expectedSeq] },
        { consistency: "read" },
      );
      return result.rows.map((row) => ({
        seq: toNumber(row["seq"], "seq"),
        commitId: String(row["commit_id"]),
      }));
    });
    return (await Promise.all(reads)).flat();
  };

  async #reminderRows(ref: TwinRef): Promise<Map<string, ReminderRow>> {
    const rows = await this.#session.readAll("read twin reminders", {
      query: this.#s.twinReminders,
      params: [ref.type, ref.id],
    });
    const out = new Map<string, ReminderRow>();
    for (const row of rows) {
      const name = row["reminder"];
      if (typeof name !== "string") continue; // the static-only row of a twin without reminders
      out.set(name, { shard: toNumber(row["shard"], "shard"), dueAt: toNumber(row["due_at"], "due_at") });
    }
    return out;
  }

  /**
   * Latest snapshot, later events, quarantine mark. Completes a staged large commit first. A
   * fork in the log makes the twin quarantined (recorded, if it was not already): the events
   * returned stop before the fork.
   */
  async loadTwin(ref: TwinRef, options: LoadOptions = {}): Promise<LoadedTwin> {
    const { claimEpoch } = options;
    return this.#guard("loadTwin", async () => {
      for (let attempt = 1; ; attempt++) {
        const { loaded, row, repair } = await this.#loadOnce(ref);
        if (claimEpoch === undefined) {
          await repair;
          return loaded;
        }
        const head = headSeen(row);
        if (head.epoch !== undefined && head.epoch > claimEpoch) {
          await repair;
          throw staleClaimError(ref, claimEpoch, head.epoch);
        }
        if (head.epoch === claimEpoch) {
          await repair;
          return loaded; // claimed at this epoch already
        }
        const lastSeq = loaded.events.at(-1)?.seq ?? loaded.snapshot?.seq ?? 0;
        // The claim and the repair of the derived rows go out together (neither needs the other).
        const [outcome] = await Promise.all([
          this.#writer.claimTwin(ref, head.seq, lastSeq, claimEpoch),
          repair,
        ]);
        if (outcome.applied) {
          if (head.seq === undefined && lastSeq === 0) this.#hintClaimedEmpty(refKey(ref));
          return loaded;
        }
        // Refused: a newer epoch claimed or wrote (stale), or a commit moved the head since the load.
        const now =
          outcome.head.epoch === undefined
            ? headSeen(await this.#twinRow(ref, this.#s.twinStatus))
            : outcome.head;
        if (now.epoch !== undefined && now.epoch > claimEpoch)
          throw staleClaimError(ref, claimEpoch, now.epoch);
        if (attempt >= CLAIM_ATTEMPTS) {
          throw new Unavailable(
            `${refKey(ref)}: could not claim the twin at lease epoch ${claimEpoch}: its head kept moving (${attempt} attempts); retry`,
            { epoch: claimEpoch },
          );
        }
      }
    });
  }

  #hintClaimedEmpty(key: string): void {
    if (this.#claimedEmpty.size >= CLAIMED_EMPTY_HINTS) this.#claimedEmpty.clear();
    this.#claimedEmpty.add(key);
  }

  /**
   * One load (see {@link loadTwin}), with the `twins` row it started from, and the repair of the
   * derived rows of the head's plan when the log holds its events (see `commit-writer.ts`), under
   * way: the caller awaits it.
   */
  async #loadOnce(
    ref: TwinRef,
  ): Promise<{ loaded: LoadedTwin; row: Row | undefined; repair: Promise<void> }> {
    {
      let row = await this.#twinRow(ref, this.#s.twinHead);
      if (await this.#rollForwardLegacy(ref, row)) row = await this.#twinRow(ref, this.#s.twinHead);
      const snapshot = row ? decodeSnapshot(row) : undefined;
      const marked = row?.["quarantine_reason"];
      const query = { from: (snapshot?.seq ?? 0) + 1, to: OPEN_END, limit: OPEN_END };
      let slice = await this.#log.read(ref, query);
      const lastSeq = slice.events.at(-1)?.seq ?? snapshot?.seq ?? 0;
      let repair = Promise.resolve();
      if (await this.#rollForwardBehind(ref, row, lastSeq)) slice = await this.#log.read(ref, query);
      else repair = this.#repairDerived(ref, row, lastSeq);
      let quarantine = typeof marked === "string" ? marked : undefined;
      try {
        if (slice.fork && quarantine === undefined) quarantine = await this.#quarantineFork(ref, slice.fork);
      } catch (error) {
        await repair.catch(() => {});
        throw error;
      }
      return { loaded: { snapshot, events: slice.events, quarantine }, row, repair };
    }
  }

  /** Events after `afterSeq`. Completes a staged large commit first; a fork fails with `ConcurrencyConflict`. */
  async readEvents(ref: TwinRef, afterSeq: number, limit?: number): Promise<EventRecord[]> {
    return this.#guard("readEvents", async () => {
      const query = { from: Math.max(0, afterSeq) + 1, to: OPEN_END, limit: limit ?? OPEN_END };
      const [row, first] = await Promise.all([
        this.#twinRow(ref, this.#s.twinStatus),
        this.#log.read(ref, query),
      ]);
      const short = first.events.length < query.limit;
      const behind =
        (await this.#rollForwardLegacy(ref, row)) ||
        (short && (await this.#rollForwardBehind(ref, row, first.events.at(-1)?.seq ?? afterSeq)));
      return this.#unforked(ref, behind ? await this.#log.read(ref, query) : first);
    });
  }

  async writeSnapshot(ref: TwinRef, snapshot: TwinSnapshot): Promise<void> {
    await this.#guard("writeSnapshot", async () => {
      // USING TIMESTAMP seq: of two snapshots, the newer one wins whatever order they arrive in.
      await this.#session.execute("write snapshot", {
        query: this.#s.writeSnapshot,
        params: snapshotParams(ref, snapshot),
      });
    });
  }

  async twinsCreated(principal: string): Promise<number> {
    return this.#guard("twinsCreated", () => this.#creations.count(principal));
  }

  async readView(ref: TwinRef): Promise<TwinView | undefined> {
    return this.#guard("readView", async () => {
      const result = await this.#session.execute(
        "read view",
        { query: this.#s.view, params: [ref.type, viewBucket(ref.id, this.#layout.viewBuckets), ref.id] },
        { consistency: "read" },
      );
      const row = result.first();
      return row ? decodeView(ref.type, row) : undefined;
    });
  }

  async queryViews(type: string, query: ViewQuery): Promise<ViewPage> {
    return this.#guard("queryViews", () =>
      queryViews(this.#session, this.#s, this.#layout.viewBuckets, type, query),
    );
  }

  /** Events by version and/or time range. A fork within the range fails with `ConcurrencyConflict`. */
  async readHistory(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    return this.#guard("readHistory", async () => {
      const slice = await this.#log.read(ref, {
        from: Math.max(1, range.fromVersion ?? 1),
        to: range.toVersion ?? OPEN_END,
        ...present({ since: range.since, until: range.until }),
        limit: Number.isFinite(range.limit) ? Math.floor(range.limit) : OPEN_END,
      });
      return this.#unforked(ref, slice);
    });
  }

  async dueReminders(
    shards: readonly number[] | "all",
    until: number,
    limit: number,
  ): Promise<ReminderIndexEntry[]> {
    return this.#guard("dueReminders", () =>
      dueReminders(this.#session, this.#s, this.#config.shards, shards, until, limit),
    );
  }

  async earliestReminders(shards: readonly number[] | "all"): Promise<Map<number, number>> {
    return this.#guard("earliestReminders", () =>
      earliestReminders(this.#session, this.#s, this.#config.shards, shards),
    );
  }

  async quarantine(ref: TwinRef, reason: string): Promise<void> {
    await this.#guard("quarantine", () => this.#markQuarantine(ref, reason));
  }

  async release(ref: TwinRef): Promise<void> {
    await this.#guard("release", async () => {
      await this.#session.execute("release quarantine", {
        query: this.#s.clearQuarantine,
        params: [ref.type, ref.id],
      });
    });
  }

  async appendTelemetry(samples: readonly TelemetrySample[]): Promise<void> {
    await this.#guard("appendTelemetry", () => this.#telemetry.append(samples));
  }

  async readTelemetry(ref: TwinRef, range: TelemetryRange): Promise<TelemetrySample[]> {
    return this.#guard("readTelemetry", () => this.#telemetry.read(ref, range));
  }

  /** Closes every connection. Later calls reject with `Unavailable`; closing twice is harmless. */
  async close(): Promise<void> {
    await this.#session.close();
  }

  // ---- helpers ----

  async #twinRow(ref: TwinRef, query: string): Promise<Row | undefined> {
    const result = await this.#session.execute(
      "read twin",
      { query, params: [ref.type, ref.id] },
      { consistency: "read" },
    );
    return result.first() ?? undefined;
  }

  /**
   * Completes the commit that set the head when the log (read up to `lastSeq`) lags it: its
   * writer passed the commit point and stopped before (or while) applying it. True if it did.
   */
  async #rollForwardBehind(ref: TwinRef, row: Row | undefined, lastSeq: number): Promise<boolean> {
    const staged = row?.["staged_commit"];
    const head = row?.["head_seq"];
    if (typeof staged !== "string" || head === null || head === undefined) return false;
    if (toNumber(head, "head_seq") <= lastSeq) return false;
    await this.#serial(refKey(ref), () => this.#writer.rollForward(ref, staged, this.#readHead, false));
    return true;
  }

  /**
   * Writes the derived rows of the plan recorded with the head again when the log ends at the
   * head (`lastSeq`): its writer may have stopped after the events and before the derived rows.
   */
  async #repairDerived(ref: TwinRef, row: Row | undefined, lastSeq: number): Promise<void> {
    const staged = row?.["staged_commit"];
    const head = row?.["head_seq"];
    if (typeof staged !== "string" || head === null || head === undefined) return;
    if (toNumber(head, "head_seq") !== lastSeq) return;
    await this.#serial(refKey(ref), () => this.#writer.repairDerived(staged));
  }

  /** Rolls forward a large commit staged by schema 1 (no head recorded); true if it did. */
  async #rollForwardLegacy(ref: TwinRef, row: Row | undefined): Promise<boolean> {
    const staged = row?.["staged_commit"];
    const head = row?.["head_seq"];
    if (typeof staged !== "string" || (head !== null && head !== undefined)) return false;
    await this.#serial(refKey(ref), () => this.#writer.rollForward(ref, staged, this.#readHead, true));
    return true;
  }

  async #unforked(ref: TwinRef, slice: LogSlice): Promise<EventRecord[]> {
    if (!slice.fork) return slice.events;
    await this.#quarantineFork(ref, slice.fork).catch(() => undefined);
    throw forkConflict(refKey(ref), slice.fork);
  }

  /** Records the quarantine of a forked twin (best effort) and returns the reason. */
  async #quarantineFork(ref: TwinRef, fork: Fork): Promise<string> {
    const reason = describeFork(refKey(ref), fork);
    await this.#markQuarantine(ref, reason).catch(() => undefined);
    return reason;
  }

  async #markQuarantine(ref: TwinRef, reason: string): Promise<void> {
    await this.#session.execute("quarantine", {
      query: this.#s.setQuarantine,
      params: [reason, Date.now(), ref.type, ref.id],
    });
  }

  #serial<T>(key: string, task: () => Promise<T>): Promise<T> {
    return this.#queues.run(key, task);
  }

  /** Runs `body`, turning every failure into a typed error naming this store. */
  async #guard<T>(operation: string, body: () => Promise<T>): Promise<T> {
    if (this.#session.closed) throw toDoppelError(new Error("store is closed"), this.label, operation);
    try {
      return await body();
    } catch (error) {
      throw toDoppelError(error, this.label, operation);
    }
  }
}
