/**
 * Edge telemetry reduction, as a twin type declares it (`static readonly edge` on the twin class):
 * what an edge node forwards to the cloud instead of the raw samples of each metric. Raw samples
 * stay at the edge (docs/edge.md, "Edge analytics").
 *
 * ```ts
 * static readonly edge = {
 *   telemetry: {
 *     temperature: { every: "1m", reduce: ["min", "max", "avg"] }, // one aggregate per minute
 *     humidity: { deadband: 0.5 },                                // only changes of 0.5 or more
 *   },
 * } satisfies EdgeOptions;
 * ```
 */
import { type Duration, toMillis } from "./duration.ts";
import { InvalidArgument } from "./errors.ts";

/** What a window forwards of its samples. `first`/`last` are by sample time. */
export type Aggregate = "min" | "max" | "avg" | "sum" | "count" | "first" | "last";

export const AGGREGATES: readonly Aggregate[] = ["min", "max", "avg", "sum", "count", "first", "last"];

/**
 * How one metric is reduced: aggregates over tumbling windows of `every` (aligned to the epoch, so
 * `1m` windows start at whole minutes), forwarded as metrics `<metric>.<aggregate>` timed at the
 * window's start; or a `deadband`: a sample is forwarded only when it differs from the last
 * forwarded value of that metric by at least `deadband` (the first one always is).
 */
export type MetricReduction =
  | { readonly every: Duration; readonly reduce: readonly Aggregate[] }
  | { readonly deadband: number };

/** A twin type's edge settings. Metrics it does not name are forwarded raw. */
export interface EdgeOptions {
  readonly telemetry?: Readonly<Record<string, MetricReduction>>;
}

/** A checked {@link MetricReduction}. */
export type CompiledReduction =
  | { readonly kind: "window"; readonly everyMs: number; readonly reduce: readonly Aggregate[] }
  | { readonly kind: "deadband"; readonly deadband: number };

/**
 * Checks a type's `edge` declaration; `InvalidArgument` names the bad metric (a window of zero, an
 * unknown or missing aggregate, a negative deadband, both or neither of `every` and `deadband`).
 */
export function compileEdgeOptions(
  type: string,
  options: EdgeOptions | undefined,
): Map<string, CompiledReduction> {
  const compiled = new Map<string, CompiledReduction>();
  for (const [metric, reduction] of Object.entries(options?.telemetry ?? {})) {
    const where = `twin type ${type}: edge.telemetry.${metric}`;
    const r = reduction as Partial<{ every: Duration; reduce: readonly string[]; deadband: number }>;
    if ((r.every === undefined) === (r.deadband === undefined)) {
      throw new InvalidArgument(`${where}: give either every (with reduce) or deadband`);
    }
    if (r.deadband !== undefined) {
      if (typeof r.deadband !== "number" || !Number.isFinite(r.deadband) || r.deadband < 0) {
        throw new InvalidArgument(`${where}: deadband must be a number of at least 0`);
      }
      compiled.set(metric, { kind: "deadband", deadband: r.deadband });
      continue;
    }
    const everyMs = toMillis(r.every as Duration, `${where}.every`);
    if (everyMs < 1) throw new InvalidArgument(`${where}.every must be above zero`);
    const reduce = r.reduce ?? [];
    if (!Array.isArray(reduce) || reduce.length === 0) {
      throw new InvalidArgument(`${where}.reduce must list at least one of ${AGGREGATES.join(", ")}`);
    }
    for (const aggregate of reduce) {
      if (!AGGREGATES.includes(aggregate as Aggregate)) {
        throw new InvalidArgument(
          `${where}.reduce: unknown aggregate ${JSON.stringify(aggregate)} (${AGGREGATES.join(", ")})`,
        );
      }
    }
    compiled.set(metric, { kind: "window", everyMs, reduce: [...new Set(reduce as Aggregate[])] });
  }
  return compiled;
}
