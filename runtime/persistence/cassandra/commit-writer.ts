/**
 * Writes a planned commit so that, for its twin, it is all or nothing:
 *
 * - **Normal commits** (at most `maxBatchBytes`): ONE logged batch holding the event rows, the view,
 *   the reminder index changes and the bucket index — one round trip. Cassandra's batch log makes
 *   a logged batch atomic across partitions: once any of it is applied, all of it will be, even
 *   if the coordinator dies (Cassandra replays the batch log).
 * - **Large commits** (over `maxBatchBytes`, or refused by the server as "Batch too large": Cassandra
 *   fails multi-partition batches over `batch_size_fail_threshold`, 50 KiB by default): the plan is
 *   first *staged* in the twin's `twins` partition (one single-partition write, which has no such
 *   limit), then applied (event rows per partition in ascending order, then the derived rows),
 *   then unstaged. A store that loads or reloads the twin (`loadTwin`, `readEvents`) and finds a
 *   staged plan rolls it forward first ({@link rollForward}) — so a commit interrupted by a crash
 *   is completed by whoever touches the twin next, never left half-applied to replay. Until then,
 *   history and query reads may see it in part.
 *
 * Every statement is idempotent (fixed keys and values; derived rows with version timestamps), so
 * re-applying any part of a plan is harmless.
 */
import type { TwinRef } from "../../core/ids.ts";
import { present } from "../../core/present.ts";
import { bind, type CommitPlan, decodeStaged, encodeStaged, type NamedBound } from "./commit-plan.ts";
import { judgeAppend, type RowIdentity } from "./conflicts.ts";
import { isBatchTooLarge } from "./failures.ts";
import type { CassandraSession, SendGuard } from "./session.ts";
import type { Statements } from "./statements.ts";

/** Reads the rows that judge an append at `expectedSeq` (see `conflicts.ts`). */
export type HeadReader = (ref: TwinRef, expectedSeq: number) => Promise<RowIdentity[]>;

export class CommitWriter {
  constructor(
    private readonly session: CassandraSession,
    private readonly s: Statements,
    private readonly maxBatchBytes: number,
  ) {}

  /**
   * Writes `plan` for `ref` (see the module comment). Rejects with `Unavailable` when the cluster
   * fails, or with what `beforeSend` throws: it runs right before the write that commits the plan
   * (the logged batch, or staging a large commit) is sent, and refuses it unsent.
   */
  async write(
    ref: TwinRef,
    plan: CommitPlan,
    expectedSeq: number,
    firstCommitId: string | undefined,
    beforeSend?: SendGuard,
  ): Promise<void> {
    if (plan.bytes <= this.maxBatchBytes) {
      try {
        await this.session.batch(
          "commit",
          bind(this.s, [...plan.eventGroups.flat(), ...plan.derived]),
          true,
          beforeSend,
        );
        return;
      } catch (error) {
        if (!isBatchTooLarge((error as Error).cause)) throw error;
      }
    }
    await this.#staged(ref, plan, expectedSeq, firstCommitId, beforeSend);
  }

  async #staged(
    ref: TwinRef,
    plan: CommitPlan,
    expectedSeq: number,
    firstCommitId: string | undefined,
    beforeSend: SendGuard | undefined,
  ): Promise<void> {
    const staged = encodeStaged({
      expectedSeq,
      firstCommitId,
      eventGroups: plan.eventGroups,
      derived: plan.derived,
    });
    await this.session.execute(
      "stage large commit",
      { query: this.s.stageCommit, params: [expectedSeq, staged, ref.type, ref.id] },
      present({ beforeSend }),
    );
    await this.#apply(plan.eventGroups, plan.derived);
    await this.#unstage(ref);
  }

  /**
   * Completes a staged plan found on twin `ref`: applies it if the log still ends at its
   * `expectedSeq` or already holds its first event, drops it if another commit took that place;
   * then unstages it. Rejects with `Unavailable` when the cluster fails (the plan stays staged).
   */
  async rollForward(ref: TwinRef, stagedText: string, readHead: HeadReader): Promise<void> {
    const plan = decodeStaged(stagedText, this.s);
    const verdict = judgeAppend(
      `${ref.type}/${ref.id}`,
      await readHead(ref, plan.expectedSeq),
      plan.expectedSeq,
      plan.firstCommitId,
    );
    if (verdict.kind !== "conflict") await this.#apply(plan.eventGroups, plan.derived);
    await this.#unstage(ref);
  }

  async #apply(
    eventGroups: readonly (readonly NamedBound[])[],
    derived: readonly NamedBound[],
  ): Promise<void> {
    // Each group is one partition: a single-partition batch is atomic and exempt from the size limit.
    for (const group of eventGroups)
      await this.session.batch("apply large commit", bind(this.s, group), false);
    await Promise.all(bind(this.s, derived).map((b) => this.session.execute("apply large commit", b)));
  }

  async #unstage(ref: TwinRef): Promise<void> {
    await this.session.execute("unstage large commit", {
      query: this.s.unstageCommit,
      params: [ref.type, ref.id],
    });
  }
}
