/**
 * The twin-creation quota on Cassandra: how many twins each principal with a quota has created,
 * one row per principal in `twin_creations`, changed only by lightweight transactions
 * (compare-and-set on the count).
 *
 * Why not a counter table: a counter cannot be read and incremented in one step, nor be part of
 * a condition, so "increment unless at the limit" would be a read followed by an increment, and
 * nodes creating twins for one key at once would each pass the read and overshoot the limit; and
 * a counter increment whose answer is lost cannot be retried safely (it may count twice). The
 * compare-and-set never lets the count pass the limit, whichever nodes create at once (Paxos
 * serialises them; one that loses the race sees the new count and tries again).
 *
 * The count is reserved before the twin's own commit point (a lightweight transaction in another
 * partition, see `commit-writer.ts`: the two cannot be one atomic step), and given back when
 * that commit definitely did not create the twin (a conflict, a stale lease, a refusal by the
 * fence, a retry of a commit that had already created it). When the commit's outcome is
 * unknown (the cluster failed mid-way) the reservation stays: the count may then hold one
 * creation that did not happen — it errs towards refusing, never towards letting a key create
 * more than its quota.
 */
import { type QuotaExceeded, Unavailable } from "../../core/errors.ts";
import type { TwinCommit, TwinCreator } from "../../core/records.ts";
import { quotaExceededError } from "../commit-check.ts";
import { toNumber } from "./rows.ts";
import { SerialQueues } from "./serial.ts";
import type { CassandraSession, Row } from "./session.ts";
import type { Statements } from "./statements.ts";

/** Compare-and-set rounds before a reservation gives up under contention (`Unavailable`, retry later). */
const MAX_ROUNDS = 64;
/** Most principals whose last known count is kept (a hint; forgotten all at once beyond). */
const MAX_HINTS = 10_000;

function createdIn(row: Row | undefined): number | undefined {
  const value = row?.["created"];
  return value === null || value === undefined ? undefined : toNumber(value, "created");
}

/**
 * Reservations of one principal are made one at a time per store (a node's creations for one key
 * never race each other, only other nodes'), and each starts from the count this store saw last:
 * one compare-and-set per creation while no other node creates for the key, a read and a retry
 * when one did.
 */
export class CreationCounter {
  readonly #hints = new Map<string, number>();
  readonly #queues = new SerialQueues();

  constructor(
    private readonly session: CassandraSession,
    private readonly s: Statements,
  ) {}

  /** Twins `principal` has created (0 when none). */
  async count(principal: string): Promise<number> {
    return (await this.#read(principal)) ?? 0;
  }

  /**
   * Counts one creation by `creator` unless it has created `maxTwins` already: `QuotaExceeded`
   * then (nothing counted). Rejects with `Unavailable` when the cluster fails or the count keeps
   * moving under contention.
   */
  reserve(commit: TwinCommit, creator: TwinCreator): Promise<QuotaExceeded | undefined> {
    return this.#queues.run(creator.principal, () => this.#reserve(commit, creator));
  }

  async #reserve(commit: TwinCommit, creator: TwinCreator): Promise<QuotaExceeded | undefined> {
    const { principal } = creator;
    let seen = this.#hints.get(principal) ?? (await this.#read(principal));
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const used = seen ?? 0;
      if (used >= creator.maxTwins) {
        // The hint may be behind a release by another node: refuse only on the count as it is now.
        const now = round === 0 && this.#hints.has(principal) ? await this.#read(principal) : seen;
        if (now !== seen) {
          seen = now;
          continue;
        }
        return quotaExceededError(commit, creator, used);
      }
      const { applied, row } = await this.session.conditional(
        "count twin creation",
        seen === undefined
          ? { query: this.s.firstCreation, params: [principal] }
          : { query: this.s.setCreations, params: [used + 1, principal, used] },
      );
      if (applied) {
        this.#hint(principal, used + 1);
        return undefined;
      }
      seen = createdIn(row);
    }
    this.#hints.delete(principal);
    throw new Unavailable(
      `${creator.principal}: could not count a twin creation: its count kept changing (${MAX_ROUNDS} attempts); retry`,
    );
  }

  /**
   * Gives back one creation counted by {@link reserve} whose twin was not created. Best effort:
   * returns false when the cluster failed or the count kept moving (the count then keeps it).
   */
  release(principal: string): Promise<boolean> {
    return this.#queues.run(principal, async () => {
      try {
        let seen = this.#hints.get(principal) ?? (await this.#read(principal));
        for (let round = 0; round < MAX_ROUNDS && seen !== undefined && seen > 0; round++) {
          const { applied, row } = await this.session.conditional("give back twin creation", {
            query: this.s.setCreations,
            params: [seen - 1, principal, seen],
          });
          if (applied) {
            this.#hint(principal, seen - 1);
            return true;
          }
          seen = createdIn(row);
        }
      } catch {
        // The count keeps the creation: it errs towards refusing (see the module comment).
      }
      this.#hints.delete(principal);
      return false;
    });
  }

  #hint(principal: string, count: number): void {
    if (this.#hints.size >= MAX_HINTS && !this.#hints.has(principal)) this.#hints.clear();
    this.#hints.set(principal, count);
  }

  async #read(principal: string): Promise<number | undefined> {
    const result = await this.session.execute(
      "read twin creations",
      { query: this.s.twinsCreated, params: [principal] },
      { consistency: "read" },
    );
    return createdIn(result.first() ?? undefined);
  }
}
