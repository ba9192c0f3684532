/**
 * Downsampling of telemetry: folds raw samples into fixed buckets with min, max, avg and count
 * per metric. Stores return raw ranges; this runs over them, so every store behaves the same.
 */
import type { TelemetrySample } from "../core/records.ts";

/**
 * Buckets `samples` (ascending, all of one twin) into windows of `intervalMs` aligned to the epoch.
 * Each bucket becomes one sample at the bucket start with metrics `<name>.min`, `<name>.max`,
 * `<name>.avg`, `<name>.count`.
 */
export function downsample(samples: readonly TelemetrySample[], intervalMs: number): TelemetrySample[] {
  const out: TelemetrySample[] = [];
  let bucketStart = Number.NaN;
  let acc = new Map<string, { min: number; max: number; sum: number; count: number }>();
  const flush = (ref: TelemetrySample["ref"]) => {
    if (acc.size === 0) return;
    const metrics: Record<string, number> = {};
    for (const [name, a] of acc) {
      metrics[`${name}.min`] = a.min;
      metrics[`${name}.max`] = a.max;
      metrics[`${name}.avg`] = a.sum / a.count;
      metrics[`${name}.count`] = a.count;
    }
    out.push({ ref, at: bucketStart, metrics });
    acc = new Map();
  };
  for (const sample of samples) {
    const start = Math.floor(sample.at / intervalMs) * intervalMs;
    if (start !== bucketStart) {
      flush(sample.ref);
      bucketStart = start;
    }
    for (const [name, value] of Object.entries(sample.metrics)) {
      const a = acc.get(name);
      if (a) {
        a.min = Math.min(a.min, value);
        a.max = Math.max(a.max, value);
        a.sum += value;
        a.count++;
      } else {
        acc.set(name, { min: value, max: value, sum: value, count: 1 });
      }
    }
  }
  const last = samples.at(-1);
  if (last) flush(last.ref);
  return out;
}
