/**
 * Time as membership sees it: a wall clock and timers, injectable so the in-process harness and
 * unit tests drive heartbeats with a manual clock. Structurally the same as the runtime's `Clock`,
 * so a runtime clock can be passed as is.
 */

/** A scheduled callback that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

/** A wall clock with timers. */
export interface MembershipClock {
  /** Epoch milliseconds. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds (never synchronously). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

/** The system clock. Its timers are unref'd: they never keep the process alive on their own. */
export const systemMembershipClock: MembershipClock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};
