/**
 * Fires durable reminders. Reminders live in each twin's state (the truth) and in the store's
 * reminder index (to find due ones without activating twins). This service polls the index for
 * the shards this node owns, keeps an in-memory timer for each reminder due soon, and on expiry
 * delivers a `reminder` message to the twin, which checks its own state before firing (so a
 * stale index entry or a double delivery is harmless).
 *
 * A delivery that fails (store down, twin quarantined) is retried by a later poll: the index
 * entry stays until the twin persists the firing.
 */

import type { Clock, TimerHandle } from "../core/clock.ts";
import type { ReminderIndexEntry } from "../core/records.ts";
import type { EventStore } from "../persistence/event-store.ts";

export interface ReminderOptions {
  /** How often the index is polled. Reminders due within two polls get an in-memory timer. */
  readonly pollMs: number;
  /** Most index entries read per poll. */
  readonly batch: number;
}

interface Scheduled {
  readonly dueAt: number;
  readonly timer: TimerHandle;
}

export class ReminderService {
  readonly #scheduled = new Map<string, Scheduled>();
  #poller: TimerHandle | null = null;
  #polling: Promise<void> | null = null;
  #stopped = true;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly store: EventStore,
    private readonly clock: Clock,
    private readonly deliver: (entry: ReminderIndexEntry) => Promise<void>,
    private readonly ownedShards: () => readonly number[] | "all",
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
  }

  /** Reads due-soon entries from the index and schedules them. Safe to call any time. */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }

  async #poll(): Promise<void> {
    this.#poller?.cancel();
    try {
      const horizon = this.clock.now() + 2 * this.options.pollMs;
      const due = await this.store.dueReminders(this.ownedShards(), horizon, this.options.batch);
      this.track(due);
    } catch (error) {
      this.warn("reminder poll failed; retrying at the next poll", error);
    } finally {
      if (!this.#stopped) this.#poller = this.clock.setTimeout(() => void this.poll(), this.options.pollMs);
    }
  }

  /** Schedules entries due before the next polls (called after commits that set reminders). */
  track(entries: readonly ReminderIndexEntry[]): void {
    if (this.#stopped) return;
    const horizon = this.clock.now() + 2 * this.options.pollMs;
    for (const entry of entries) {
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
