/**
 * Fires durable reminders. Reminders live in each twin's state (the truth) and in the store's
 * reminder index (to find due ones without activating twins). This service polls the index for
 * the shards this node owns, keeps an in-memory timer for each reminder due soon, and on expiry
 * delivers a `reminder` message to the twin, which checks its own state before firing (so a
 * stale index entry or a double delivery is harmless).
 *
 * A poll reads the due entries only of the shards that may have one due before the next polls.
 * The service keeps, per owned shard, the earliest due time it knows of: read from the store once
 * (`earliestReminders`), then lowered by every reminder this node's commits set ({@link track};
 * a commit only ever adds entries of its own twin's shard). A known time may be earlier than the
 * store's (a reminder cancelled or fired since): that costs one read, never a late reminder. A
 * shard's earliest entry is read again when this node starts owning it (a new owner epoch: also
 * when the shard was lost and regained between two polls), after a read of its due entries found
 * none (what was due has fired), when a commit of one of its twins failed in a way that may have
 * written index rows anyway ({@link indexMayHaveChanged}: an unknown outcome that landed, another
 * writer's commit), and for every shard each `rescanMs` (index rows this node neither wrote nor
 * read back, e.g. a previous owner's late write after a failover: found within `rescanMs`). A
 * twin's load or reload ({@link track}ed with the twin's reminders: what a load's repair writes, or
 * what another writer's commits set) needs no read. Without this a poll
 * read every owned shard, one read per shard per poll (256 a second on Cassandra by default).
 *
 * A delivery that fails (store down, twin quarantined) is retried by a later poll: the index
 * entry stays until the twin persists the firing, and its shard is read at each poll until then.
 */

import type { Clock, TimerHandle } from "../core/clock.ts";
import type { ShardOwnership } from "../core/ownership.ts";
import type { ReminderIndexEntry } from "../core/records.ts";
import type { EventStore } from "../persistence/event-store.ts";

/** What the service reads of the store. */
export type ReminderIndex = Pick<EventStore, "dueReminders" | "earliestReminders">;

export interface ReminderOptions {
  /** How often the index is polled. Reminders due within two polls get an in-memory timer. */
  readonly pollMs: number;
  /** Most index entries read per poll. */
  readonly batch: number;
  /** How often every owned shard's earliest entry is read again (see the module comment). */
  readonly rescanMs: number;
}

interface Scheduled {
  readonly dueAt: number;
  readonly timer: TimerHandle;
}

export class ReminderService {
  readonly #scheduled = new Map<string, Scheduled>();
  /** Per shard, the earliest due time known to be (or to have been) in its index. */
  readonly #earliest = new Map<number, number>();
  /**
   * The shards whose earliest entry has been read, each with the owner epoch it was read at (`"all"`:
   * every shard, when this node owns all).
   */
  #read: Map<number, number> | "all" = new Map();
  /** Shards to read the earliest entry of again at the next poll. */
  #reread = new Set<number>();
  #rescanAt = Number.NEGATIVE_INFINITY;
  #poller: TimerHandle | null = null;
  #polling: Promise<void> | null = null;
  #stopped = true;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly store: ReminderIndex,
    private readonly clock: Clock,
    private readonly deliver: (entry: ReminderIndexEntry) => Promise<void>,
    private readonly ownership: Pick<ShardOwnership, "ownedShards" | "writerFor">,
    private readonly options: ReminderOptions,
    private readonly warn: (message: string, error: unknown) => void,
  ) {}

  /** Starts polling (the first poll runs at once). */
  start(): void {
    this.#stopped = false;
    void this.poll();
  }

  /** Stops polling and cancels in-memory timers (the index keeps every reminder). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#poller?.cancel();
    for (const { timer } of this.#scheduled.values()) timer.cancel();
    this.#scheduled.clear();
    await this.#polling;
    await Promise.allSettled([...this.#inFlight]);
    this.#forgetAll();
  }

  /** Reads due-soon entries from the index and schedules them. Safe to call any time. */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }

  /**
   * Tells the service that `shard`'s index may hold entries it has not seen (a commit of one of its
   * twins failed but may have landed, or another writer's commit won): read at the next poll.
   */
  indexMayHaveChanged(shard: number): void {
    this.#earliest.delete(shard);
    this.#reread.add(shard);
  }

  async #poll(): Promise<void> {
    this.#poller?.cancel();
    try {
      const now = this.clock.now();
      if (now >= this.#rescanAt) {
        this.#forgetAll();
        this.#rescanAt = now + this.options.rescanMs;
      }
      const horizon = now + 2 * this.options.pollMs;
      const shards = await this.#shardsDueBy(this.ownership.ownedShards(), horizon);
      if (shards.length > 0) {
        const due = await this.store.dueReminders(shards, horizon, this.options.batch);
        this.track(due);
        if (due.length < this.options.batch) {
          // Nothing left due in these shards: what they held has fired. Read their next entry.
          const holding = new Set(due.map((entry) => entry.shard));
          for (const shard of shards) if (!holding.has(shard)) this.indexMayHaveChanged(shard);
        }
      }
    } catch (error) {
      this.warn("reminder poll failed; retrying at the next poll", error);
    } finally {
      if (!this.#stopped) this.#poller = this.clock.setTimeout(() => void this.poll(), this.options.pollMs);
    }
  }

  /** The owned shards with an entry known due by `horizon`, after reading the earliest entry of those not known. */
  async #shardsDueBy(owned: readonly number[] | "all", horizon: number): Promise<number[]> {
    const reread = this.#reread;
    this.#reread = new Set();
    try {
      if (owned === "all") {
        if (this.#read !== "all") {
          this.#learn(await this.store.earliestReminders("all"));
          this.#read = "all";
        } else if (reread.size > 0) this.#learn(await this.store.earliestReminders([...reread]));
        return [...this.#earliest].filter(([, at]) => at <= horizon).map(([shard]) => shard);
      }
      if (this.#read === "all") this.#read = new Map();
      const read = this.#read;
      const mine = this.#epochs(owned);
      // A shard read at another epoch was lost (and maybe regained) since: others may have written.
      for (const [shard, epoch] of read) {
        if (mine.get(shard) === epoch) continue;
        read.delete(shard);
        this.#earliest.delete(shard);
      }
      for (const shard of this.#earliest.keys()) if (!mine.has(shard)) this.#earliest.delete(shard);
      const unread = [...mine.keys()].filter((shard) => !read.has(shard) || reread.has(shard));
      if (unread.length > 0) {
        this.#learn(await this.store.earliestReminders(unread));
        for (const shard of unread) read.set(shard, mine.get(shard)!);
      }
      return [...this.#earliest].filter(([, at]) => at <= horizon).map(([shard]) => shard);
    } catch (error) {
      for (const shard of reread) this.#reread.add(shard);
      throw error;
    }
  }

  /** The owner epoch of each of `owned` (a shard lost since `ownedShards()` answered is left out). */
  #epochs(owned: readonly number[]): Map<number, number> {
    const epochs = new Map<number, number>();
    for (const shard of owned) {
      try {
        epochs.set(shard, this.ownership.writerFor(shard).epoch);
      } catch {
        // Not owned any more: its entries are the next owner's.
      }
    }
    return epochs;
  }

  /** Keeps the earlier of what the store said and what this node's commits set meanwhile. */
  #learn(earliest: ReadonlyMap<number, number>): void {
    for (const [shard, dueAt] of earliest) this.#lower(shard, dueAt);
  }

  #lower(shard: number, dueAt: number): void {
    const known = this.#earliest.get(shard);
    if (known === undefined || dueAt < known) this.#earliest.set(shard, dueAt);
  }

  #forgetAll(): void {
    this.#earliest.clear();
    this.#read = new Map();
    this.#reread = new Set();
  }

  /**
   * Schedules entries due before the next polls and remembers every entry's shard as holding one
   * (called with what this node's commits set or moved, with a twin's reminders when it was loaded
   * or reloaded, and with what a poll read).
   */
  track(entries: readonly ReminderIndexEntry[]): void {
    if (this.#stopped) return;
    const horizon = this.clock.now() + 2 * this.options.pollMs;
    for (const entry of entries) {
      this.#lower(entry.shard, entry.dueAt);
      if (entry.dueAt > horizon) continue;
      const key = `${entry.type}/${entry.id}#${entry.name}`;
      const existing = this.#scheduled.get(key);
      if (existing?.dueAt === entry.dueAt) continue;
      existing?.timer.cancel();
      const timer = this.clock.setTimeout(() => this.#fire(key, entry), entry.dueAt - this.clock.now());
      this.#scheduled.set(key, { dueAt: entry.dueAt, timer });
    }
  }

  #fire(key: string, entry: ReminderIndexEntry): void {
    if (this.#scheduled.get(key)?.dueAt === entry.dueAt) this.#scheduled.delete(key);
    const delivery = this.deliver(entry)
      .catch((error: unknown) => this.warn(`reminder ${key} not delivered; retrying at the next poll`, error))
      .finally(() => this.#inFlight.delete(delivery));
    this.#inFlight.add(delivery);
  }

  /** Reminders with an in-memory timer (for tests and metrics). */
  get scheduled(): number {
    return this.#scheduled.size;
  }
}
