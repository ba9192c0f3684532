/**
 * Time as lease keeping sees it: a *monotonic* clock (never stepped by NTP) with timers,
 * injectable so tests can pause and jump time. Structurally the same as the runtime's `Clock`, so
 * a runtime manual clock can be passed as is (its `now()` only ever moves forward).
 */

import { performance } from "node:perf_hooks";

/** A scheduled callback that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

/** A monotonic clock with timers. */
export interface LeaseClock {
  /** Milliseconds on a clock that never goes backwards (any origin). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds (never synchronously). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

/**
 * `performance.now()` (CLOCK_MONOTONIC: it keeps counting while the process is stopped, e.g. by
 * SIGSTOP or a long GC pause, but not while the whole machine is suspended) and unref'd timers.
 */
export const systemLeaseClock: LeaseClock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};
