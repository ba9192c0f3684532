/**
 * The shape every store requires of a commit before it reads or writes anything: `expectedSeq` is
 * a non-negative integer and the events continue the log right after it (seq `expectedSeq + 1`,
 * `+ 2`...). A commit that breaks this is a caller bug, answered with its own `InvalidArgument`
 * (never a `ConcurrencyConflict`, and never failing the other commits of a call).
 */
import { InvalidArgument } from "../core/errors.ts";
import { refKey } from "../core/ids.ts";
import type { TwinCommit } from "../core/records.ts";

/** What is wrong with `commit`'s shape, or `undefined` when nothing is. */
export function commitShapeError(commit: TwinCommit): InvalidArgument | undefined {
  const key = refKey(commit.ref);
  const E = commit.expectedSeq;
  if (!Number.isSafeInteger(E) || E < 0) {
    return new InvalidArgument(`${key}: expectedSeq must be a non-negative integer, got ${E}`);
  }
  for (const [i, event] of commit.events.entries()) {
    if (event.seq !== E + 1 + i) {
      return new InvalidArgument(
        `${key}: commit events must continue the log at seq ${E + 1 + i}, got seq ${event.seq}`,
        { expectedSeq: E, index: i, seq: event.seq },
      );
    }
  }
  return undefined;
}
