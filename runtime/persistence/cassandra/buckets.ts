/**
 * Bucket math of the Cassandra layout: how a twin's log, the query projection and telemetry are
 * split into partitions so that no partition grows without limit. Pure functions; the numbers
 * they return are part of the stored data, so they must never change for an existing keyspace
 * (the layout parameters are recorded in the keyspace, see `schema.ts`).
 *
 * - Events: seq 1..N of a twin go to buckets of `eventsPerBucket` consecutive sequence numbers
 *   (bucket 0 = seq 1..size). A log read walks buckets upwards.
 * - Views: twin ids of a type spread over `viewBuckets` partitions by a stable hash (FNV-1a of the
 *   id's UTF-8 bytes); a query merges the partitions in id order.
 * - Telemetry: one partition per twin per time window of `telemetryWindowMs`, aligned to the epoch.
 */

/** The bucket holding event `seq` (seq counts from 1; anything below 1 maps to bucket 0). */
export function eventBucket(seq: number, eventsPerBucket: number): number {
  return Math.floor((Math.max(seq, 1) - 1) / eventsPerBucket);
}

/** The first sequence number of `bucket`. */
export function bucketFirstSeq(bucket: number, eventsPerBucket: number): number {
  return bucket * eventsPerBucket + 1;
}

/** The last sequence number of `bucket`. */
export function bucketLastSeq(bucket: number, eventsPerBucket: number): number {
  return (bucket + 1) * eventsPerBucket;
}

/** True when `seq` is the first sequence number of its bucket (its commit opens the bucket). */
export function opensBucket(seq: number, eventsPerBucket: number): boolean {
  return seq >= 1 && (seq - 1) % eventsPerBucket === 0;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a (32 bit) of the UTF-8 bytes of `text`: stable across processes, versions and platforms. */
export function fnv1a(text: string): number {
  let hash = FNV_OFFSET;
  for (const byte of Buffer.from(text, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash >>> 0;
}

/** The projection partition of twin `id` among `viewBuckets` partitions of its type. */
export function viewBucket(id: string, viewBuckets: number): number {
  return fnv1a(id) % viewBuckets;
}

/** The telemetry window (partition) of a sample taken at `at` (epoch ms). */
export function telemetryWindow(at: number, windowMs: number): number {
  return Math.floor(at / windowMs);
}

/**
 * Orders strings by Unicode code point, which is the order Cassandra keeps `text` clustering
 * columns in (UTF-8 byte order). JavaScript's `<` compares UTF-16 units and disagrees for
 * characters above U+FFFF; merging partitions must agree with the server, so use this.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) stand for code points above 0xFFFF: they sort after every BMP unit.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}
