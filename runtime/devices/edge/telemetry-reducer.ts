/**
 * The edge's telemetry reduction, without I/O: for each raw telemetry message it decides what is
 * forwarded now (metrics the twin type does not reduce, and deadband metrics that moved far
 * enough) and folds windowed metrics into their open windows; `due(now)` hands out the windows
 * whose end plus the grace has passed on the clock, as the aggregates to forward.
 *
 * Windows are tumbling, aligned to the epoch, by sample time (`at`, or the time the edge stored
 * the message). A sample for a window already handed out is late: not forwarded (it stays raw at
 * the edge) and counted. Changes are planned first and applied only once the caller forwarded
 * what the plan says (`apply`), so a failed forward leaves the reducer as it was.
 */
import type { CompiledReduction } from "../../core/edge-telemetry.ts";
import { refKey, type TwinRef } from "../../core/ids.ts";

/** One telemetry sample: its time (epoch ms) and metric values. */
export interface RawSample {
  readonly at: number;
  readonly metrics: Readonly<Record<string, number>>;
}

/** A closed window's aggregates, to forward as one sample timed at the window's start. */
export interface ClosedWindow {
  readonly ref: TwinRef;
  readonly metric: string;
  readonly start: number;
  readonly everyMs: number;
  /** A stable id of this window's aggregate message (a re-send is deduplicated). */
  readonly messageId: string;
  readonly sample: RawSample;
}

/** What one raw message turns into; pass it to {@link TelemetryReducer.apply} once forwarded. */
export interface ReductionPlan {
  readonly ref: TwinRef;
  /** Samples to forward now (raw metrics and deadband passes); empty: nothing to forward. */
  readonly forward: readonly RawSample[];
  readonly folds: readonly { readonly metric: string; readonly at: number; readonly value: number }[];
  readonly deadbands: readonly { readonly metric: string; readonly value: number }[];
  readonly late: number;
}

interface OpenWindow {
  readonly ref: TwinRef;
  readonly metric: string;
  readonly start: number;
  readonly reduction: Extract<CompiledReduction, { kind: "window" }>;
  count: number;
  sum: number;
  min: number;
  max: number;
  first: { at: number; value: number };
  last: { at: number; value: number };
}

/** Most (twin, metric) deadband values remembered; beyond it the oldest is forgotten (its next sample is forwarded). */
const MAX_DEADBANDS = 100_000;

export class TelemetryReducer {
  readonly #reductions: (type: string) => ReadonlyMap<string, CompiledReduction> | undefined;
  readonly #graceMs: number;
  readonly #windows = new Map<string, OpenWindow>();
  readonly #deadbands = new Map<string, number>();
  /** Every window with `end + grace <= #closedThrough` has been handed out. */
  #closedThrough = Number.NEGATIVE_INFINITY;

  constructor(
    reductions: (type: string) => ReadonlyMap<string, CompiledReduction> | undefined,
    options: { readonly graceMs: number },
  ) {
    this.#reductions = reductions;
    this.#graceMs = options.graceMs;
  }

  /** How many windows are open. */
  get openWindows(): number {
    return this.#windows.size;
  }

  /** Whether the type reduces any metric (otherwise its telemetry is forwarded as it came). */
  reduces(type: string): boolean {
    return (this.#reductions(type)?.size ?? 0) > 0;
  }

  /** Plans one raw message of `ref`. */
  plan(ref: TwinRef, samples: readonly RawSample[]): ReductionPlan {
    const reductions = this.#reductions(ref.type);
    if (!reductions || reductions.size === 0)
      return { ref, forward: samples, folds: [], deadbands: [], late: 0 };
    const forward: RawSample[] = [];
    const folds: { metric: string; at: number; value: number }[] = [];
    const deadbands = new Map<string, number>();
    let late = 0;
    for (const sample of samples) {
      const kept: Record<string, number> = {};
      for (const [metric, value] of Object.entries(sample.metrics)) {
        const reduction = reductions.get(metric);
        if (!reduction || typeof value !== "number" || !Number.isFinite(value)) {
          kept[metric] = value;
        } else if (reduction.kind === "deadband") {
          const key = `${refKey(ref)}|${metric}`;
          const last = deadbands.get(metric) ?? this.#deadbands.get(key);
          if (last === undefined || Math.abs(value - last) >= reduction.deadband) {
            kept[metric] = value;
            deadbands.set(metric, value);
          }
        } else {
          const start = Math.floor(sample.at / reduction.everyMs) * reduction.everyMs;
          if (start + reduction.everyMs + this.#graceMs <= this.#closedThrough) late++;
          else folds.push({ metric, at: sample.at, value });
        }
      }
      if (Object.keys(kept).length > 0) forward.push({ at: sample.at, metrics: kept });
    }
    return {
      ref,
      forward,
      folds,
      deadbands: [...deadbands].map(([metric, value]) => ({ metric, value })),
      late,
    };
  }

  /**
   * Folds samples the edge node took before a restart back into their windows, when those are
   * still open at `now` (end + grace not passed); nothing is forwarded for them, deadbands are not
   * touched. Returns how many values were folded.
   */
  refold(ref: TwinRef, samples: readonly RawSample[], now: number): number {
    const reductions = this.#reductions(ref.type);
    const plan = this.plan(ref, samples);
    const folds = plan.folds.filter(({ metric, at }) => {
      const reduction = reductions?.get(metric);
      if (reduction?.kind !== "window") return false;
      const start = Math.floor(at / reduction.everyMs) * reduction.everyMs;
      return start + reduction.everyMs + this.#graceMs > now;
    });
    this.apply({ ref, forward: [], folds, deadbands: [], late: 0 });
    return folds.length;
  }

  /** Applies a plan whose `forward` samples were forwarded. */
  apply(plan: ReductionPlan): void {
    const key = refKey(plan.ref);
    const reductions = this.#reductions(plan.ref.type);
    for (const { metric, value } of plan.deadbands) {
      const k = `${key}|${metric}`;
      this.#deadbands.delete(k);
      this.#deadbands.set(k, value);
      if (this.#deadbands.size > MAX_DEADBANDS) {
        const oldest = this.#deadbands.keys().next().value;
        if (oldest !== undefined) this.#deadbands.delete(oldest);
      }
    }
    for (const { metric, at, value } of plan.folds) {
      const reduction = reductions?.get(metric);
      if (reduction?.kind !== "window") continue;
      const start = Math.floor(at / reduction.everyMs) * reduction.everyMs;
      const k = `${key}|${metric}|${start}`;
      const window = this.#windows.get(k);
      if (!window) {
        this.#windows.set(k, {
          ref: plan.ref,
          metric,
          start,
          reduction,
          count: 1,
          sum: value,
          min: value,
          max: value,
          first: { at, value },
          last: { at, value },
        });
        continue;
      }
      window.count++;
      window.sum += value;
      window.min = Math.min(window.min, value);
      window.max = Math.max(window.max, value);
      if (at < window.first.at) window.first = { at, value };
      if (at >= window.last.at) window.last = { at, value };
    }
  }

  /** The windows due at `now` (end + grace passed), oldest first. Each stays open until {@link closed}. */
  due(now: number): ClosedWindow[] {
    const due: ClosedWindow[] = [];
    for (const window of this.#windows.values()) {
      const everyMs = window.reduction.everyMs;
      if (window.start + everyMs + this.#graceMs > now) continue;
      const metrics: Record<string, number> = {};
      for (const aggregate of window.reduction.reduce) {
        metrics[`${window.metric}.${aggregate}`] =
          aggregate === "avg"
            ? window.sum / window.count
            : aggregate === "first"
              ? window.first.value
              : aggregate === "last"
                ? window.last.value
                : window[aggregate];
      }
      due.push({
        ref: window.ref,
        metric: window.metric,
        start: window.start,
        everyMs,
        messageId: `reduce:${refKey(window.ref)}:${window.metric}:${everyMs}:${window.start}`,
        sample: { at: window.start, metrics },
      });
    }
    return due.sort((a, b) => a.start - b.start);
  }

  /** Marks a due window forwarded: it is forgotten. */
  closed(window: ClosedWindow): void {
    this.#windows.delete(`${refKey(window.ref)}|${window.metric}|${window.start}`);
  }

  /** Records that every window due at `now` was forwarded: later samples for them are late. */
  closedThrough(now: number): void {
    this.#closedThrough = Math.max(this.#closedThrough, now);
  }
}
