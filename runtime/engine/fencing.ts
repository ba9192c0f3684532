/**
 * The fenced committer: the store as the group committer sees it, checked against shard
 * ownership before each write and when the store reports a conflict.
 */
import { DoppelError, ErrorCode, Unavailable } from "../core/errors.ts";
import type { ShardOwnership } from "../core/ownership.ts";
import type { TwinCommit } from "../core/records.ts";
import type { EventStore } from "../persistence/event-store.ts";

/**
 * The last check before a commit goes to the store: this node must still own the shard, at the
 * epoch its events carry. A commit that fails it is refused (`Unavailable`, safe to retry) and
 * never written: events computed under a lease that was lost meanwhile must not land.
 */
export function fenceCheck(ownership: ShardOwnership, commit: TwinCommit): DoppelError | undefined {
  const stamped = commit.events[0]?.writer.epoch;
  try {
    const writer = ownership.writerFor(commit.shard);
    if (stamped !== undefined && stamped !== writer.epoch) {
      return new Unavailable(`shard ${commit.shard} changed lease epoch while the write waited; retry`, {
        retry: "not-owner",
        shard: commit.shard,
      });
    }
    return undefined;
  } catch (error) {
    return DoppelError.from(error);
  }
}

/**
 * The store as the group committer sees it:
 *
 * - each commit is fenced once more by the store itself right before its write is sent
 *   (`CommitOptions.fence`): the store's own work before the write (waiting for a request slot)
 *   can outlast the lease. These checks are local and cannot stop a request already sent or
 *   queued in a driver or a socket; the store's own fence can: it refuses any commit whose writer
 *   epoch is older than the twin's newest (`Unavailable`, `reason: "stale-epoch"`), atomically
 *   with the append (see `docs/cluster.md`);
 * - an append the store refuses as a conflict (another writer appended first) becomes the fence's
 *   safe-to-retry not-owner refusal when, by the time the store answers, the node no longer holds
 *   the commit's shard at the epoch its events carry: the lease expired or moved while the write
 *   waited, and the other writer is the shard's owner now. A conflict while the lease is still
 *   held stays a conflict (the activation reloads before its next turn).
 */
export function committerStore(store: EventStore, ownership: ShardOwnership): EventStore {
  const fence = (commit: TwinCommit) => fenceCheck(ownership, commit);
  const commit = async (commits: readonly TwinCommit[]): Promise<(DoppelError | undefined)[]> => {
    // The store checks the fence again right before it sends each write (after its own reads).
    const results = await store.commit(commits, { fence });
    return results.map((result, i) =>
      result?.code === ErrorCode.ConcurrencyConflict
        ? (fenceCheck(ownership, commits[i]!) ?? result)
        : result,
    );
  };
  return new Proxy(store, {
    get(target, property) {
      if (property === "commit") return commit;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
