/**
 * Telemetry as time series, kept apart from state events: one partition per twin per time window
 * (`telemetryWindowMs`, 1 hour by default), rows clustered by `(at, sample)` where `sample` is a
 * random uuid, so every sample is kept, even several at the same millisecond. `telemetry_windows`
 * lists each twin's windows that hold data, so a range read visits only those (a range of a year
 * over a twin that reported for a day reads one or two partitions, not 8760).
 *
 * Appends write the window index entry before the samples (an index entry without samples is
 * harmless; samples without one would be invisible), then the samples as one unlogged batch per
 * partition. A retried append may store a sample twice: telemetry is at-least-once, and
 * downsampling (min/max/avg) is not thrown off by a repeat. Reads go window by window, ascending,
 * and stop at `limit`.
 *
 * Downsampling stays generic (`runtime/persistence/downsample.ts` over raw ranges): metrics are a
 * map per sample, and CQL can only aggregate columns grouped by clustering prefix, not map values
 * by time interval — pushing it down would mean a row per metric, multiplying every write.
 */
import { createHash } from "node:crypto";
import cassandra from "cassandra-driver";
import { refKey, type TwinRef } from "../../core/ids.ts";
import type { TelemetrySample } from "../../core/records.ts";
import type { TelemetryRange } from "../event-store.ts";
import { telemetryWindow } from "./buckets.ts";
import { cqlLimit, decodeSample, toNumber } from "./rows.ts";
import type { Bound, CassandraSession } from "./session.ts";
import type { Statements } from "./statements.ts";

/** The sample id of a keyed sample: its key's SHA-256, first 16 bytes (the same key, the same row). */
function keyedUuid(key: string): InstanceType<typeof cassandra.types.Uuid> {
  return new cassandra.types.Uuid(createHash("sha256").update(key).digest().subarray(0, 16));
}

/** Most samples in one batch (all of one partition). */
const BATCH_ROWS = 200;
/** Windows remembered as already indexed (then the memory is cleared). */
const KNOWN_WINDOWS = 100_000;

export class TelemetrySeries {
  readonly #known = new Set<string>();

  constructor(
    private readonly session: CassandraSession,
    private readonly s: Statements,
    private readonly windowMs: number,
  ) {}

  /** Appends samples (any twins, any order). Rejects with `Unavailable`; some samples may then be stored. */
  async append(samples: readonly TelemetrySample[]): Promise<void> {
    const partitions = new Map<string, { ref: TwinRef; window: number; rows: Bound[] }>();
    for (const sample of samples) {
      const window = telemetryWindow(sample.at, this.windowMs);
      const key = `${refKey(sample.ref)}#${window}`;
      let partition = partitions.get(key);
      if (!partition) {
        partition = { ref: sample.ref, window, rows: [] };
        partitions.set(key, partition);
      }
      partition.rows.push({
        query: this.s.insertSample,
        params: [
          sample.ref.type,
          sample.ref.id,
          window,
          sample.at,
          sample.key === undefined ? cassandra.types.Uuid.random() : keyedUuid(sample.key),
          { ...sample.metrics },
        ],
      });
    }
    const fresh = [...partitions.entries()].filter(([key]) => !this.#known.has(key));
    await Promise.all(
      fresh.map(([, p]) =>
        this.session.execute("index telemetry window", {
          query: this.s.insertWindow,
          params: [p.ref.type, p.ref.id, p.window],
        }),
      ),
    );
    if (this.#known.size + fresh.length > KNOWN_WINDOWS) this.#known.clear();
    for (const [key] of fresh) this.#known.add(key);
    const batches: Bound[][] = [];
    for (const { rows } of partitions.values()) {
      for (let i = 0; i < rows.length; i += BATCH_ROWS) batches.push(rows.slice(i, i + BATCH_ROWS));
    }
    await Promise.all(batches.map((batch) => this.session.batch("append telemetry", batch, false)));
  }

  /** Samples of `ref` with `since <= at < until`, ascending, at most `range.limit`. */
  async read(ref: TwinRef, range: TelemetryRange): Promise<TelemetrySample[]> {
    const out: TelemetrySample[] = [];
    const limit = Number.isFinite(range.limit) ? Math.floor(range.limit) : Number.MAX_SAFE_INTEGER;
    if (!(limit > 0) || !(range.until > range.since)) return out;
    const windows = await this.session.readAll("read telemetry windows", {
      query: this.s.windows,
      params: [
        ref.type,
        ref.id,
        telemetryWindow(range.since, this.windowMs),
        telemetryWindow(range.until - 1, this.windowMs),
      ],
    });
    const ordered = windows.map((row) => toNumber(row["time_window"], "time_window")).sort((a, b) => a - b);
    for (const window of ordered) {
      const rows = await this.session.readAll(
        "read telemetry",
        {
          query: this.s.samples,
          params: [ref.type, ref.id, window, range.since, range.until, cqlLimit(limit - out.length)],
        },
        limit - out.length,
        5000,
      );
      for (const row of rows) out.push(decodeSample(ref, row));
      if (out.length >= limit) break;
    }
    return out;
  }
}
