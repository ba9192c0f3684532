/**
 * Time as the runtime sees it. Production uses {@link SystemClock}; tests use {@link ManualClock}
 * to make reminders, idle passivation and timeouts deterministic.
 */

import { type Clock, type TimerHandle, wallClock } from "../../cluster/clock.ts";

export type { Clock, TimerHandle };

/** The real clock: epoch milliseconds, unref'd timers (they never keep a process alive). */
export const SystemClock: Clock = wallClock;

interface ManualTimer {
  readonly due: number;
  readonly order: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Lets the engine's promises settle (a few macrotask turns). */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * A clock that only moves when told to. `advance` fires due timers in order, letting work settle
 * (`settleRounds` macrotask turns, default 5) between them; `jump` moves time without firing
 * anything, as a process paused (SIGSTOP, a long GC) sees it when it resumes.
 */
export class ManualClock implements Clock {
  #now: number;
  #timers: ManualTimer[] = [];
  #order = 0;
  readonly #settleRounds: number;

  constructor(start: number | Date = Date.UTC(2026, 0, 1), options: { settleRounds?: number } = {}) {
    this.#now = typeof start === "number" ? start : start.getTime();
    this.#settleRounds = options.settleRounds ?? 5;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = {
      due: this.#now + Math.max(0, ms),
      order: this.#order++,
      fn,
      cancelled: false,
    };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in due order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle(this.#settleRounds);
    for (;;) {
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      const next = this.#timers.reduce<ManualTimer | undefined>(
        (best, t) =>
          t.due <= target && (!best || t.due < best.due || (t.due === best.due && t.order < best.order))
            ? t
            : best,
        undefined,
      );
      if (!next) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#now = Math.max(this.#now, next.due);
      next.fn();
      await settle(this.#settleRounds);
    }
    this.#now = target;
    await settle(this.#settleRounds);
  }

  /** Moves time forward by `ms` without firing anything (a paused process). */
  jump(ms: number): void {
    this.#now += ms;
  }

  /** Number of pending timers (for tests). */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}
