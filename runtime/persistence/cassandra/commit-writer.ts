/**
 * Writes a planned commit, fenced: every commit that carries events has ONE commit point, a
 * lightweight transaction on the twin's head in its `twins` partition, and is then applied.
 *
 * 1. **Commit point** ({@link CommitWriter.claimHead}): `UPDATE twins SET head_seq = last,
 *    head_epoch = epoch, staged_commit = plan IF head_seq = expectedSeq AND head_epoch <= epoch`
 *    (Paxos, serial consistency). Only one writer can move the head from a given seq, and a writer
 *    whose lease epoch is older than the epoch that last moved the head can never move it, however
 *    late its request reaches the server (a paused process that resumes, a request queued in the
 *    driver or a socket). The head lives in one partition per twin, so a commit's events may
 *    span event buckets freely: bucket boundaries play no part in the check.
 * 2. **Apply** ({@link CommitWriter.applyCommitted}): the events as one single-partition write (a
 *    plain INSERT for one event, an unlogged batch, atomic within its partition, for several; one
 *    per bucket in the rare commit that crosses a bucket), and beside them the derived rows (view,
 *    reminder index and rows, bucket index) as plain writes, all sent at once. No logged batch:
 *    the plan recorded with the head already makes the commit recoverable as a whole, so the batch
 *    log's extra writes would buy nothing. Until the apply is done the log may lag the head, or the
 *    derived rows the log; whoever loads the twin next completes the plan
 *    ({@link CommitWriter.rollForward} when the log lags, {@link CommitWriter.repairDerived}
 *    otherwise), so a writer that dies between or during the two steps never leaves a hole in the
 *    log nor a stale view or reminder index past the next activation. The plan is not cleared
 *    after the apply (a clearing write could race with the next commit's); the next commit
 *    replaces it.
 *
 * Every statement of the apply is idempotent (fixed keys and values; derived rows with version
 * timestamps), so applying a plan twice, or late, is harmless.
 */
import type { TwinRef } from "../../core/ids.ts";
import { bind, type CommitPlan, decodeStaged, encodeStaged, type NamedBound } from "./commit-plan.ts";
import { judgeAppend, type RowIdentity } from "./conflicts.ts";
import { isBatchTooLarge } from "./failures.ts";
import { toNumber } from "./rows.ts";
import type { CassandraSession, Row, SendGuard } from "./session.ts";
import type { Statements } from "./statements.ts";

/** Reads the rows that judge an append at `expectedSeq` (see `conflicts.ts`). */
export type HeadReader = (ref: TwinRef, expectedSeq: number) => Promise<RowIdentity[]>;

/** The twin's head as the server saw it when a commit point was refused. */
export interface HeadSeen {
  /** The head's seq; `undefined` when the twin has no recorded head (no commit, or schema 1 data). */
  readonly seq: number | undefined;
  readonly epoch: number | undefined;
}

/** The head in a `twins` row (or in the answer to a refused transaction, which names its condition's columns). */
export function headSeen(row: Row | undefined): HeadSeen {
  const seq = row?.["head_seq"];
  const epoch = row?.["head_epoch"];
  return {
    seq: seq === null || seq === undefined ? undefined : toNumber(seq, "head_seq"),
    epoch: epoch === null || epoch === undefined ? undefined : toNumber(epoch, "head_epoch"),
  };
}

/** Outcome of a commit point. */
export type ClaimOutcome = { readonly applied: true } | { readonly applied: false; readonly head: HeadSeen };

export class CommitWriter {
  constructor(
    private readonly session: CassandraSession,
    private readonly s: Statements,
    private readonly maxBatchBytes: number,
  ) {}

  /**
   * The commit point: moves the head of `ref` from `expectedSeq` to `lastSeq` at `epoch` (or, with
   * `open`, sets a head where none is recorded) and records `plan` beside it. `beforeSend` runs
   * right before the transaction is sent and may refuse it unsent (its error is rethrown).
   * Rejects with `Unavailable` when the cluster fails (then it may or may not have applied: a
   * reload completes it if it did).
   */
  async claimHead(
    ref: TwinRef,
    plan: CommitPlan,
    expectedSeq: number,
    lastSeq: number,
    epoch: number,
    firstCommitId: string | undefined,
    open: boolean,
    beforeSend?: SendGuard,
  ): Promise<ClaimOutcome> {
    const staged = encodeStaged({
      expectedSeq,
      firstCommitId,
      eventGroups: plan.eventGroups,
      derived: plan.derived,
    });
    const set = [lastSeq, epoch, expectedSeq, staged, ref.type, ref.id];
    const { applied, row } = await this.session.conditional(
      open ? "open twin head" : "advance twin head",
      open
        ? { query: this.s.openHead, params: set }
        : { query: this.s.advanceHead, params: [...set, expectedSeq, epoch] },
      beforeSend,
    );
    return applied ? { applied: true } : { applied: false, head: headSeen(row) };
  }

  /**
   * The claim at activation: raises the head of `ref` to `epoch` where the activation found it
   * (`headSeq`; `undefined`: no head recorded, then one is set at `lastSeq`, the log's end). A
   * refusal says where the head is now. Rejects with `Unavailable` when the cluster fails.
   */
  async claimTwin(
    ref: TwinRef,
    headSeq: number | undefined,
    lastSeq: number,
    epoch: number,
  ): Promise<ClaimOutcome> {
    const { applied, row } = await this.session.conditional(
      "claim twin head",
      headSeq === undefined
        ? { query: this.s.claimOpenHead, params: [lastSeq, epoch, ref.type, ref.id] }
        : { query: this.s.claimHead, params: [epoch, ref.type, ref.id, headSeq, epoch] },
    );
    return applied ? { applied: true } : { applied: false, head: headSeen(row) };
  }

  /**
   * Applies the rows of a plan that passed its commit point (see the module comment): events and
   * derived rows at once, without a logged batch. Rejects with `Unavailable` when the cluster fails
   * (the next load completes the plan).
   */
  async applyCommitted(plan: CommitPlan): Promise<void> {
    await Promise.all([this.#applyEvents(plan.eventGroups), this.#applyDerived(plan.derived)]);
  }

  /**
   * Writes the derived rows of the plan recorded with `ref`'s head again (the log holds its
   * events: a writer may have stopped before its derived rows landed). Idempotent: the rows carry
   * the plan's version as their timestamp, so a newer commit's rows always win. Rejects with
   * `Unavailable` when the cluster fails.
   */
  async repairDerived(stagedText: string): Promise<void> {
    await this.#applyDerived(decodeStaged(stagedText, this.s).derived);
  }

  /**
   * Applies `plan`'s rows as ONE logged batch (atomic across partitions: for commits that have no
   * plan recorded with a head, i.e. without events, or the unfenced commit the bench measures),
   * or partition by partition when it is too large. Rejects with `Unavailable` when the cluster
   * fails. `beforeSend` (only for the unfenced commit `bench:store` measures) runs before the
   * first write is sent and may refuse it.
   */
  async apply(plan: CommitPlan, beforeSend?: SendGuard): Promise<void> {
    if (plan.bytes <= this.maxBatchBytes) {
      try {
        const rows = bind(this.s, [...plan.eventGroups.flat(), ...plan.derived]);
        await this.session.batch("commit", rows, true, beforeSend);
        return;
      } catch (error) {
        if (!isBatchTooLarge((error as Error).cause)) throw error;
      }
    }
    beforeSend?.();
    await this.#applyByPartition(plan.eventGroups, plan.derived);
  }

  /**
   * Completes the plan recorded with `ref`'s head, when the log lags the head: applies it if the
   * log still ends at its `expectedSeq` or already holds its first event, drops it if another
   * commit took that place (possible only for a plan staged by schema 1, before the head
   * existed). `legacy` (no head recorded): clears the plan afterwards, as schema 1 did. Rejects
   * with `Unavailable` when the cluster fails.
   */
  async rollForward(ref: TwinRef, stagedText: string, readHead: HeadReader, legacy: boolean): Promise<void> {
    const plan = decodeStaged(stagedText, this.s);
    const verdict = judgeAppend(
      `${ref.type}/${ref.id}`,
      await readHead(ref, plan.expectedSeq),
      plan.expectedSeq,
      plan.firstCommitId,
    );
    if (verdict.kind !== "conflict") await this.#applyByPartition(plan.eventGroups, plan.derived);
    if (legacy) {
      await this.session.execute("unstage large commit", {
        query: this.s.unstageCommit,
        params: [ref.type, ref.id],
      });
    }
  }

  async #applyByPartition(
    eventGroups: readonly (readonly NamedBound[])[],
    derived: readonly NamedBound[],
  ): Promise<void> {
    await this.#applyEvents(eventGroups);
    await this.#applyDerived(derived);
  }

  /** Each group is one partition: a single-partition batch is atomic and exempt from the size limit. */
  async #applyEvents(eventGroups: readonly (readonly NamedBound[])[]): Promise<void> {
    for (const group of eventGroups) {
      const [only] = group;
      if (group.length === 1 && only) await this.session.execute("apply commit", bind(this.s, [only])[0]!);
      else await this.session.batch("apply commit", bind(this.s, group), false);
    }
  }

  async #applyDerived(derived: readonly NamedBound[]): Promise<void> {
    await Promise.all(bind(this.s, derived).map((b) => this.session.execute("apply commit", b)));
  }
}
