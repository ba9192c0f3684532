/**
 * The shape every store requires of a commit before it reads or writes anything: `expectedSeq` is
 * a non-negative integer and the events continue the log right after it (seq `expectedSeq + 1`,
 * `+ 2`...). A commit that breaks this is a caller bug, answered with its own `InvalidArgument`
 * (never a `ConcurrencyConflict`, and never failing the other commits of a call). And the
 * refusal every store gives a writer whose lease epoch is older than the twin's newest.
 */
import { InvalidArgument, QuotaExceeded, Unavailable } from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { TwinCommit, TwinCreator } from "../core/records.ts";

/** What is wrong with `commit`'s shape, or `undefined` when nothing is. */
export function commitShapeError(commit: TwinCommit): InvalidArgument | undefined {
  const E = commit.expectedSeq;
  if (!Number.isSafeInteger(E) || E < 0) {
    return new InvalidArgument(`${refKey(commit.ref)}: expectedSeq must be a non-negative integer, got ${E}`);
  }
  const events = commit.events;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    if (event.seq !== E + 1 + i) {
      return new InvalidArgument(
        `${refKey(commit.ref)}: commit events must continue the log at seq ${E + 1 + i}, got seq ${event.seq}`,
        { expectedSeq: E, index: i, seq: event.seq },
      );
    }
  }
  return undefined;
}

/** The lease epoch of a commit's writer (0 for a commit without events: it has no writer to fence). */
export function commitEpoch(commit: TwinCommit): number {
  return commit.events[0]?.writer.epoch ?? 0;
}

/**
 * The refusal of a commit whose writer's lease epoch is older than the newest epoch that has
 * written the twin: that writer lost the shard (its lease expired or moved while it waited) and
 * must not append. Safe to retry on the shard's owner (`retry: "not-owner"`); nothing was written.
 */
export function staleEpochError(commit: TwinCommit, twinEpoch: number): Unavailable {
  const epoch = commitEpoch(commit);
  return new Unavailable(
    `${refKey(commit.ref)}: refused a commit at lease epoch ${epoch}: the twin was claimed or written at lease epoch ${twinEpoch}; this writer lost shard ${commit.shard}; retry on its owner`,
    { retry: "not-owner", reason: "stale-epoch", shard: commit.shard, epoch, twinEpoch },
  );
}

/**
 * The refusal of a claim (see `LoadOptions.claimEpoch`) at an epoch older than one that has
 * claimed or written the twin already: the claiming node's lease is stale. Nothing was written.
 */
export function staleClaimError(ref: TwinRef, epoch: number, twinEpoch: number): Unavailable {
  return new Unavailable(
    `${refKey(ref)}: refused to claim the twin at lease epoch ${epoch}: it was claimed or written at lease epoch ${twinEpoch}; this writer's lease is stale; retry on the owner`,
    { retry: "not-owner", reason: "stale-epoch", epoch, twinEpoch },
  );
}

/**
 * The creator whose quota a commit counts: its `creator` when the commit creates the twin (its
 * first commit, with events); `undefined` otherwise.
 */
export function creatorOf(commit: TwinCommit): TwinCreator | undefined {
  return commit.expectedSeq === 0 && commit.events.length > 0 ? commit.creator : undefined;
}

/** The refusal of a commit that would create a twin beyond its creator's quota (`used` twins created). */
export function quotaExceededError(commit: TwinCommit, creator: TwinCreator, used: number): QuotaExceeded {
  return new QuotaExceeded(
    `${creator.principal} may create at most ${creator.maxTwins} twins (quota maxTwins) and has created ${used}: ${refKey(commit.ref)} was not created`,
    {
      quota: "maxTwins",
      principal: creator.principal,
      limit: creator.maxTwins,
      used,
      twin: refKey(commit.ref),
    },
  );
}
