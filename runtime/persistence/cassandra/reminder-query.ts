/**
 * `dueReminders` over the reminder index: one partition per shard, clustered by due time, so a
 * poll reads only the due prefix of each shard it asks for (`due_at <= until LIMIT limit`). The
 * shards' answers are merged by due time (ties by type, id, name) and cut to `limit`.
 *
 * `"all"` means shards `0 .. shards - 1` (the store is told the cluster's shard count): a single
 * node owning everything polls every shard. A poll therefore costs one small read per shard
 * asked for — bounded by the shard count, run through the store's concurrency limit — and reads at
 * most `limit` entries from each. `earliestReminders` reads the first row of each shard asked for
 * (`LIMIT 1`, the partition is clustered by due time), so a poll can skip the shards with nothing
 * due soon.
 */
import type { ReminderIndexEntry } from "../../core/records.ts";
import { compareCodePoints } from "./buckets.ts";
import { cqlLimit, decodeReminder, toNumber } from "./rows.ts";
import type { CassandraSession } from "./session.ts";
import type { Statements } from "./statements.ts";

/** Orders index entries as the contract does: by due time, then type, id, name. */
export function compareReminders(a: ReminderIndexEntry, b: ReminderIndexEntry): number {
  return (
    a.dueAt - b.dueAt ||
    compareCodePoints(a.type, b.type) ||
    compareCodePoints(a.id, b.id) ||
    compareCodePoints(a.name, b.name) ||
    a.shard - b.shard
  );
}

/** Due entries of the given shards (see the module comment). */
export async function dueReminders(
  session: CassandraSession,
  s: Statements,
  shardCount: number,
  shards: readonly number[] | "all",
  until: number,
  limit: number,
): Promise<ReminderIndexEntry[]> {
  if (!(limit > 0)) return [];
  const wanted = shards === "all" ? Array.from({ length: shardCount }, (_, i) => i) : [...new Set(shards)];
  const perShard = await Promise.all(
    wanted.map(async (shard) => {
      const rows = await session.readAll(
        "read due reminders",
        { query: s.dueInShard, params: [shard, until, cqlLimit(limit)] },
        limit,
        5000,
      );
      return rows.map((row) => decodeReminder(shard, row));
    }),
  );
  return perShard.flat().sort(compareReminders).slice(0, limit);
}

/** The earliest due time of each given shard that has an entry (see the module comment). */
export async function earliestReminders(
  session: CassandraSession,
  s: Statements,
  shardCount: number,
  shards: readonly number[] | "all",
): Promise<Map<number, number>> {
  const wanted = shards === "all" ? Array.from({ length: shardCount }, (_, i) => i) : [...new Set(shards)];
  const earliest = new Map<number, number>();
  await Promise.all(
    wanted.map(async (shard) => {
      const result = await session.execute(
        "read earliest reminder",
        { query: s.earliestInShard, params: [shard] },
        { consistency: "read" },
      );
      const row = result.rows[0];
      if (row) earliest.set(shard, toNumber(row["due_at"], "due_at"));
    }),
  );
  return earliest;
}
