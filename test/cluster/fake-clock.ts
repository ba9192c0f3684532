/**
 * A manual clock for cluster unit tests: `advance` moves time and fires due timers in order,
 * letting promises settle between them; `jump` moves time *without* running timers, as when a
 * process is paused (SIGSTOP) and its timers have not had a chance to run yet.
 */

export interface FakeTimer {
  cancel(): void;
}

interface Pending {
  readonly due: number;
  readonly order: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Lets pending promise chains run (a few macrotask turns). */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export class FakeClock {
  #now: number;
  #order = 0;
  #timers: Pending[] = [];

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): FakeTimer {
    const timer: Pending = { due: this.#now + Math.max(0, ms), order: this.#order++, fn, cancelled: false };
    this.#timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in due order. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    for (;;) {
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      const due = this.#timers
        .filter((t) => t.due <= target)
        .sort((a, b) => a.due - b.due || a.order - b.order)[0];
      if (!due) break;
      this.#timers.splice(this.#timers.indexOf(due), 1);
      this.#now = Math.max(this.#now, due.due);
      due.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /** Moves time forward by `ms` without firing anything (a paused process). */
  jump(ms: number): void {
    this.#now += ms;
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}
