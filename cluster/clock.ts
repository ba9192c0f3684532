/**
 * Time as the cluster layer (and the runtime, which re-exports these) sees it: a clock with
 * timers, injectable so tests can drive heartbeats, lease renewals and reminders with a manual
 * clock. Two system clocks differ only in what `now()` counts:
 *
 * - {@link wallClock}: epoch milliseconds (`Date.now()`), for times that other processes read —
 *   membership heartbeats, event times, reminders;
 * - {@link monotonicClock}: `performance.now()` (CLOCK_MONOTONIC: never stepped by NTP; it keeps
 *   counting while the process is stopped, e.g. by SIGSTOP or a long GC pause, but not while the
 *   whole machine is suspended), for local deadlines — lease keeping.
 *
 * Timers of both are unref'd: they never keep a process alive on their own.
 */
import { performance } from "node:perf_hooks";

/** A scheduled callback that can be cancelled. */
export interface TimerHandle {
  cancel(): void;
}

/** A clock with timers. */
export interface Clock {
  /** Milliseconds (epoch milliseconds for a wall clock; any origin for a monotonic one). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds (never synchronously). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

function systemClock(now: () => number): Clock {
  return {
    now,
    setTimeout(fn, ms) {
      const timer = setTimeout(fn, Math.max(0, ms));
      timer.unref();
      return { cancel: () => clearTimeout(timer) };
    },
  };
}

/** Epoch milliseconds and unref'd timers. */
export const wallClock: Clock = systemClock(() => Date.now());

/** Monotonic milliseconds and unref'd timers. */
export const monotonicClock: Clock = systemClock(() => performance.now());
