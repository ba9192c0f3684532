/**
 * Conflict detection without a Paxos round per commit. Event rows are clustered by
 * `(seq, commit_id)`, so two writers appending at the same seq never overwrite each other: both
 * rows stay. Two checks then keep a fork from ever being merged silently:
 *
 * - On append ({@link judgeAppend}): before writing, the store reads the rows at and after
 *   `expectedSeq` (one small read of the tail of one partition). A log that does not end at
 *   `expectedSeq` is a `ConcurrencyConflict` and nothing is written — unless the row at
 *   `expectedSeq + 1` carries this commit's id, which is a retry of a commit already written
 *   (success, nothing written twice). Commits of one twin through one store are serialised, so
 *   this is exact for one node; two nodes racing within the few milliseconds between read and
 *   write can both pass it, and then...
 * - On replay ({@link findFork}): every read of the log looks for a sequence number held by two
 *   different commits. Loading such a twin reports it quarantined (and records the quarantine);
 *   `readEvents` and `readHistory` fail with `ConcurrencyConflict`. Nothing is merged.
 */
import { ConcurrencyConflict } from "../../core/errors.ts";
import type { Writer } from "../../core/records.ts";

/** The parts of an event row that identify its write. */
export interface RowIdentity {
  readonly seq: number;
  readonly commitId: string;
  readonly writer?: Writer;
}

/** Outcome of the pre-write check. */
export type AppendVerdict =
  | { readonly kind: "append" }
  /** The commit's events are already stored (a retry): succeed, write nothing. */
  | { readonly kind: "retried" }
  | { readonly kind: "conflict"; readonly error: ConcurrencyConflict };

/** Two or more commits at one sequence number. */
export interface Fork {
  readonly seq: number;
  readonly commits: readonly RowIdentity[];
}

/** The first sequence number held by more than one commit in `rows` (any order), if any. */
export function findFork(rows: readonly RowIdentity[]): Fork | undefined {
  const bySeq = new Map<number, RowIdentity[]>();
  for (const row of rows) {
    const at = bySeq.get(row.seq);
    if (!at) bySeq.set(row.seq, [row]);
    else if (!at.some((r) => r.commitId === row.commitId)) at.push(row);
  }
  let fork: Fork | undefined;
  for (const [seq, commits] of bySeq) {
    if (commits.length > 1 && (!fork || seq < fork.seq)) fork = { seq, commits };
  }
  return fork;
}

/** A readable account of a fork, used as the quarantine reason and conflict message. */
export function describeFork(key: string, fork: Fork): string {
  const who = fork.commits
    .map((c) => `commit ${c.commitId}${c.writer ? ` by ${c.writer.node} (epoch ${c.writer.epoch})` : ""}`)
    .join(" and ");
  return `${key}: two writers appended at version ${fork.seq}: ${who}; nothing was merged`;
}

/** The conflict for a fork. */
export function forkConflict(key: string, fork: Fork): ConcurrencyConflict {
  return new ConcurrencyConflict(describeFork(key, fork), {
    seq: fork.seq,
    commits: fork.commits.map((c) => c.commitId),
  });
}

/**
 * Judges an append at `expectedSeq` from the rows with `seq >= expectedSeq` of the partitions
 * holding `expectedSeq` and `expectedSeq + 1` (see the module comment). `firstCommitId` is the
 * commit id of the commit's first event (absent for a commit without events).
 */
export function judgeAppend(
  key: string,
  rows: readonly RowIdentity[],
  expectedSeq: number,
  firstCommitId: string | undefined,
): AppendVerdict {
  const fork = findFork(rows);
  if (fork) return { kind: "conflict", error: forkConflict(key, fork) };
  const next = rows.find((r) => r.seq === expectedSeq + 1);
  if (next) {
    if (firstCommitId !== undefined && next.commitId === firstCommitId) return { kind: "retried" };
    const actualSeq = Math.max(...rows.map((r) => r.seq));
    return {
      kind: "conflict",
      error: new ConcurrencyConflict(
        `${key}: expected the log to end at ${expectedSeq}, but it goes on to at least ${actualSeq}`,
        { expectedSeq, actualSeq },
      ),
    };
  }
  if (expectedSeq > 0 && !rows.some((r) => r.seq === expectedSeq)) {
    return {
      kind: "conflict",
      error: new ConcurrencyConflict(
        `${key}: expected the log to end at ${expectedSeq}, but it ends before`,
        {
          expectedSeq,
        },
      ),
    };
  }
  return { kind: "append" };
}
