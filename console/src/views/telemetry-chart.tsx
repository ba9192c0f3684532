/**
 * A twin's telemetry as a chart: samples of the chosen window downsampled by the node into about
 * {@link POINTS} buckets (GET /v1/twins/{type}/{id}/telemetry?from=&to=&bucket=), drawn with uPlot
 * (average line, min and max around it), with a text summary and a data table for screen readers.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { query, request, twinPath } from "../api.ts";
import { listOf, type TelemetrySample } from "../model.ts";
import { useResource } from "../resource.ts";
import { ErrorNote } from "./widgets.tsx";

const POINTS = 120;
const WINDOWS = [
  { label: "Last 5 minutes", ms: 5 * 60_000 },
  { label: "Last 15 minutes", ms: 15 * 60_000 },
  { label: "Last hour", ms: 60 * 60_000 },
  { label: "Last day", ms: 24 * 60 * 60_000 },
];
const REFRESH_MS = 10_000;

interface Series {
  readonly times: number[];
  readonly avg: (number | null)[];
  readonly min: (number | null)[];
  readonly max: (number | null)[];
}

/** The metric names in the samples (`temperature.avg` and `temperature` both give `temperature`). */
function metricNames(samples: readonly TelemetrySample[]): string[] {
  const names = new Set<string>();
  for (const sample of samples)
    for (const key of Object.keys(sample.metrics ?? {})) names.add(key.replace(/\.(min|max|avg|count)$/, ""));
  return [...names].sort();
}

function seriesOf(samples: readonly TelemetrySample[], metric: string): Series {
  const pick = (sample: TelemetrySample, suffix: string) =>
    sample.metrics[`${metric}.${suffix}`] ?? sample.metrics[metric] ?? null;
  const rows = samples.filter((s) => s.metrics && (metric in s.metrics || `${metric}.avg` in s.metrics));
  return {
    times: rows.map((s) => Date.parse(s.at) / 1000),
    avg: rows.map((s) => pick(s, "avg")),
    min: rows.map((s) => pick(s, "min")),
    max: rows.map((s) => pick(s, "max")),
  };
}

/** The metric with the most distinct values (a temperature rather than an on/off flag), shown first. */
function liveliest(samples: readonly TelemetrySample[], names: readonly string[]): string {
  let best = names[0] ?? "";
  let most = -1;
  for (const name of names) {
    const distinct = new Set(seriesOf(samples, name).avg).size;
    if (distinct > most) [best, most] = [name, distinct];
  }
  return best;
}

const round = (value: number | null | undefined) =>
  value == null ? "—" : String(Math.round(value * 100) / 100);

export function TelemetryChart({ type, id }: { type: string; id: string }) {
  const [windowMs, setWindowMs] = useState(WINDOWS[1]!.ms);
  const [metric, setMetric] = useState("");
  const plotHolder = useRef<HTMLDivElement>(null);
  const { data, error } = useResource(
    () => {
      const to = Date.now();
      const from = to - windowMs;
      const bucket = `${Math.max(1, Math.round(windowMs / POINTS / 1000))}s`;
      return request(
        `${twinPath(type, id)}/telemetry${query({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), bucket })}`,
      );
    },
    [type, id, windowMs],
    REFRESH_MS,
  );
  const samples = listOf<TelemetrySample>(data, "samples");

  const names = metricNames(samples);
  const chosen = names.includes(metric) ? metric : liveliest(samples, names);
  const series = seriesOf(samples, chosen);

  useEffect(() => {
    const holder = plotHolder.current;
    if (!holder || series.times.length === 0) return;
    const plot = new uPlot(
      {
        width: Math.max(320, holder.clientWidth),
        height: 260,
        series: [
          {},
          { label: `${chosen} avg`, stroke: "#1d4ed8", width: 2 },
          { label: "min", stroke: "#64748b", dash: [4, 4] },
          { label: "max", stroke: "#b91c1c", dash: [4, 4] },
        ],
        axes: [{}, { label: chosen }],
        legend: { show: false },
      },
      [series.times, series.avg, series.min, series.max],
      holder,
    );
    return () => plot.destroy();
  });

  const latest = series.avg[series.avg.length - 1];
  const values = series.avg.filter((v): v is number => v !== null);
  const summary =
    values.length === 0
      ? `No ${chosen || "telemetry"} samples in this window.`
      : `${chosen}: ${values.length} points, from ${round(Math.min(...values))} to ${round(Math.max(...values))}, latest ${round(latest)}.`;
  return (
    <section aria-labelledby="telemetry-title" class="card">
      <h2 id="telemetry-title">Telemetry</h2>
      <div class="filter">
        <div class="field">
          <label for="telemetry-metric">Metric</label>
          <select
            id="telemetry-metric"
            value={chosen}
            onChange={(e) => setMetric((e.target as HTMLSelectElement).value)}
          >
            {names.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="telemetry-window">Window</label>
          <select
            id="telemetry-window"
            value={String(windowMs)}
            onChange={(e) => setWindowMs(Number((e.target as HTMLSelectElement).value))}
          >
            {WINDOWS.map((w) => (
              <option key={w.ms} value={String(w.ms)}>
                {w.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      {error && <ErrorNote error={error} title="Could not read telemetry" />}
      <figure class="chart">
        <div
          ref={plotHolder}
          role="img"
          aria-label={summary}
          data-testid="telemetry-chart"
          data-points={values.length}
        />
        <figcaption>{summary}</figcaption>
      </figure>
      {values.length > 0 && (
        <details>
          <summary>Data table</summary>
          <table>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">avg</th>
                <th scope="col">min</th>
                <th scope="col">max</th>
              </tr>
            </thead>
            <tbody>
              {series.times.map((t, i) => (
                <tr key={t}>
                  <td>{new Date(t * 1000).toLocaleTimeString()}</td>
                  <td class="number">{round(series.avg[i])}</td>
                  <td class="number">{round(series.min[i])}</td>
                  <td class="number">{round(series.max[i])}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </section>
  );
}
