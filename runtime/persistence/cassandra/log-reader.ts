/**
 * Reads a twin's log across its buckets: a sequence range walks the buckets upwards from the one
 * holding the first wanted seq, one partition at a time, and stops at the end of the range, at
 * `limit` events, or where the log ends (a bucket that stops short of its last seq). A time range
 * first consults the bucket index (`event_buckets`: the time of each bucket's first event) to
 * skip buckets wholly outside it, then filters exactly.
 *
 * Every read checks for forks (two commits at one seq, see `conflicts.ts`); a read returns the
 * events before the first fork and the fork itself.
 */
import type { TwinRef } from "../../core/ids.ts";
import type { EventRecord } from "../../core/records.ts";
import { bucketFirstSeq, bucketLastSeq, eventBucket } from "./buckets.ts";
import { type Fork, findFork } from "./conflicts.ts";
import type { Layout } from "./migrate.ts";
import { decodeEvent, toNumber } from "./rows.ts";
import type { CassandraSession } from "./session.ts";
import type { Statements } from "./statements.ts";

/** A slice of a log: the events (ascending, before any fork) and the first fork found. */
export interface LogSlice {
  readonly events: EventRecord[];
  readonly fork: Fork | undefined;
}

/** What to read: seq bounds (inclusive), optional time bounds (inclusive), at most `limit` events. */
export interface LogQuery {
  readonly from: number;
  readonly to: number;
  readonly since?: number;
  readonly until?: number;
  readonly limit: number;
}

/** Rows per round trip when reading a bucket. */
const PAGE = 1000;

export class LogReader {
  constructor(
    private readonly session: CassandraSession,
    private readonly s: Statements,
    private readonly layout: Layout,
    /** How far event times may step back and still be found by a time-range read (ms). */
    private readonly clockSkewMs: number,
  ) {}

  /** Events in the range (see {@link LogQuery}). */
  async read(ref: TwinRef, query: LogQuery): Promise<LogSlice> {
    let { from, to } = query;
    const { since, until } = query;
    const timed = since !== undefined || until !== undefined;
    if (timed) {
      const span = await this.#bucketSpan(
        ref,
        since ?? Number.NEGATIVE_INFINITY,
        until ?? Number.POSITIVE_INFINITY,
      );
      if (!span) return { events: [], fork: undefined };
      from = Math.max(from, span.from);
      to = Math.min(to, span.to);
    } else if (Number.isFinite(query.limit)) {
      // The log has no gaps: `limit` events are at most `limit` sequence numbers.
      to = Math.min(to, from + Math.max(0, query.limit) - 1);
    }
    const events: EventRecord[] = [];
    const keep = (e: EventRecord) =>
      (since === undefined || e.at >= since) && (until === undefined || e.at <= until);
    if (!(query.limit > 0) || from > to) return { events, fork: undefined };
    const size = this.layout.eventsPerBucket;
    for (let bucket = eventBucket(from, size); ; bucket++) {
      const low = Math.max(from, bucketFirstSeq(bucket, size));
      const high = Math.min(to, bucketLastSeq(bucket, size));
      const rows = await this.session.readAll(
        "read events",
        { query: this.s.eventRange, params: [ref.type, ref.id, bucket, low, high] },
        Number.POSITIVE_INFINITY,
        PAGE,
      );
      const decoded = rows.map(decodeEvent);
      const fork = findFork(decoded);
      for (const event of decoded) {
        if (fork && event.seq >= fork.seq) return { events, fork };
        if (keep(event)) events.push(event);
        if (events.length >= query.limit) return { events, fork: undefined };
      }
      if (fork) return { events, fork };
      const last = decoded.at(-1)?.seq ?? low - 1;
      // The log ends inside this bucket, or the range does.
      if (last < high || high >= to) return { events, fork: undefined };
    }
  }

  /**
   * The seq range of the buckets that may hold events timed within [since, until], or undefined
   * if none can. Bucket b covers the times from its first event to the next bucket's first event;
   * `clockSkewMs` widens that, so events whose time stepped back a little are still found.
   */
  async #bucketSpan(
    ref: TwinRef,
    since: number,
    until: number,
  ): Promise<{ from: number; to: number } | undefined> {
    const rows = await this.session.readAll("read bucket index", {
      query: this.s.buckets,
      params: [ref.type, ref.id],
    });
    const buckets = rows
      .map((r) => ({ bucket: toNumber(r["bucket"], "bucket"), firstAt: toNumber(r["first_at"], "first_at") }))
      .sort((a, b) => a.bucket - b.bucket);
    const skew = this.clockSkewMs;
    let lo: number | undefined;
    let hi: number | undefined;
    for (const [i, b] of buckets.entries()) {
      const next = buckets[i + 1];
      if (next && next.firstAt < since - skew) continue; // ends before `since`
      if (b.firstAt > until + skew) break; // starts after `until`
      lo ??= b.bucket;
      hi = b.bucket;
    }
    if (lo === undefined || hi === undefined) return undefined;
    const size = this.layout.eventsPerBucket;
    return { from: bucketFirstSeq(lo, size), to: bucketLastSeq(hi, size) };
  }
}
