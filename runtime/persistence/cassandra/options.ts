/**
 * Configuration of the Cassandra event store: one zod schema, shared by the node's configuration
 * (`store: { kind: "cassandra", ... }`) and by code that opens a store directly, compiled once
 * into {@link CassandraStoreConfig} with every default filled in.
 *
 * Everything that ends up inside CQL text (the keyspace name, replication settings) is checked
 * here against a strict pattern, because DDL cannot take bind markers: a name that passes cannot
 * close a quote or start another statement. All other values are only ever bound.
 *
 * Layout settings (`eventsPerBucket`, `viewBuckets`, `telemetryWindow`) shape how rows are keyed,
 * so they are fixed when a keyspace is first used and recorded in it (see `schema.ts`). Leave them
 * unset to adopt whatever the keyspace records (or the defaults for a new keyspace).
 */

import { z } from "zod";
import { describeIssues } from "../../core/config-issues.ts";
import { durationSchema, positiveDurationSchema } from "../../core/duration.ts";
import { InvalidArgument } from "../../core/errors.ts";

/** Keyspace names: lower case (CQL folds unquoted names), a letter first, at most 48 characters. */
export const KEYSPACE_PATTERN = /^[a-z][a-z0-9_]{0,47}$/;
/** Data center names as they may appear in a replication map. */
const DATA_CENTER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** `host`, `host:port`, `[v6]:port` — no spaces, quotes or separators. */
const CONTACT_POINT_PATTERN = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The default Cassandra layout of a new keyspace. */
export const LAYOUT_DEFAULTS = {
  /** Events per partition of a twin's log (a twin's log is split into buckets of this many events). */
  eventsPerBucket: 1000,
  /** Partitions per twin type in the query projection (views). */
  viewBuckets: 16,
  /** Width of one telemetry partition of a twin, ms (1 hour). */
  telemetryWindowMs: 3_600_000,
} as const;

/** Consistency levels by name (case and `_` are ignored: `LOCAL_QUORUM` = `localQuorum`). */
export const CONSISTENCY_LEVELS = {
  any: 0x00,
  one: 0x01,
  two: 0x02,
  three: 0x03,
  quorum: 0x04,
  all: 0x05,
  localquorum: 0x06,
  eachquorum: 0x07,
  localone: 0x0a,
} as const;

/** Serial consistency levels (for the few lightweight transactions: layout and migration lock). */
export const SERIAL_LEVELS = { serial: 0x08, localserial: 0x09 } as const;

/** A level by name, or by its protocol code (so compiled settings compile again to themselves). */
function levelSchema<T extends Record<string, number>>(levels: T, fallback: string) {
  return z
    .union([z.string(), z.number().int()])
    .default(fallback)
    .transform((name, ctx) => {
      const code =
        typeof name === "number"
          ? Object.values(levels).find((c) => c === name)
          : levels[name.replaceAll("_", "").toLowerCase()];
      if (code === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `unknown consistency level '${name}' (one of ${Object.keys(levels).join(", ")})`,
        });
        return z.NEVER;
      }
      return code;
    });
}

/** Timeouts, delays and widths: above zero (`startupRetry` and `historyClockSkew` may be zero). */
const duration = positiveDurationSchema;

const replicationSchema = z.discriminatedUnion("class", [
  z
    .object({
      class: z.literal("SimpleStrategy"),
      replicationFactor: z.number().int().min(1).max(32).default(1),
    })
    .strict(),
  z
    .object({
      class: z.literal("NetworkTopologyStrategy"),
      /** Replicas per data center, e.g. `{ "dc1": 3, "dc2": 3 }`. */
      dataCenters: z
        .record(
          z.string().regex(DATA_CENTER_PATTERN, "is not a data center name"),
          z.number().int().min(0).max(32),
        )
        .refine((dcs) => Object.keys(dcs).length > 0, "name at least one data center"),
    })
    .strict(),
]);

/** The replication of the keyspace, used only when the store creates it. */
export type Replication = z.output<typeof replicationSchema>;

/**
 * The store's settings as a user writes them (without `kind`). Used by `runtime/node/options.ts`
 * for the `cassandra` store variant.
 */
export const cassandraSettingsShape = {
  /** Seed nodes: `host` or `host:port` (default port 9042). */
  contactPoints: z.array(z.string().regex(CONTACT_POINT_PATTERN, "must be host or host:port")).min(1),
  /** The data center this node talks to (load balancing stays local to it). */
  localDataCenter: z.string().min(1).max(64).default("datacenter1"),
  keyspace: z
    .string()
    .regex(
      KEYSPACE_PATTERN,
      "must be a lower-case letter, then lower-case letters, digits or '_' (at most 48)",
    )
    .default("doppel"),
  /** How the keyspace is created if it does not exist (an existing keyspace is left as it is). */
  replication: replicationSchema.default({ class: "SimpleStrategy", replicationFactor: 1 }),
  consistency: z
    .object({
      read: levelSchema(CONSISTENCY_LEVELS, "localQuorum"),
      write: levelSchema(CONSISTENCY_LEVELS, "localQuorum"),
      serial: levelSchema(SERIAL_LEVELS, "localSerial"),
    })
    .strict()
    .prefault({}),
  /** Plain-text authentication (PasswordAuthenticator). */
  credentials: z
    .object({ username: z.string().min(1), password: z.string() })
    .strict()
    .optional(),
  /** TLS to the cluster; files are PEM. Present (even `{}`) means TLS is on. */
  tls: z
    .object({
      caFile: z.string().min(1).optional(),
      certFile: z.string().min(1).optional(),
      keyFile: z.string().min(1).optional(),
      /** Name to check the server certificate against (default: the contact point's host). */
      serverName: z.string().min(1).optional(),
      rejectUnauthorized: z.boolean().default(true),
    })
    .strict()
    .optional(),
  /** Layout (fixed per keyspace): events per partition of a twin's log. */
  eventsPerBucket: z.number().int().min(1).max(1_000_000).optional(),
  /** Layout (fixed per keyspace): partitions per twin type in the query projection. */
  viewBuckets: z.number().int().min(1).max(1024).optional(),
  /** Layout (fixed per keyspace): width of one telemetry partition, e.g. "1h". */
  telemetryWindow: duration.optional(),
  /** Most requests this store has in flight at once (bounded concurrency). */
  maxConcurrentRequests: z.number().int().min(1).max(8192).default(128),
  /**
   * Largest commit (estimated bytes) written as one logged batch. Larger commits take the staged
   * path. Keep it below the cluster's `batch_size_fail_threshold` (Cassandra default 50 KiB).
   */
  maxBatchBytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(40 * 1024),
  /** Client-side timeout of one request. */
  requestTimeout: duration.default(12_000),
  /** Timeout of one connection attempt. */
  connectTimeout: duration.default(5_000),
  /** How long opening the store keeps retrying an unreachable cluster before it gives up. */
  startupRetry: durationSchema.default(30_000),
  /** Reconnection backoff while the cluster is lost: first delay and ceiling. */
  reconnect: z
    .object({ baseDelay: duration.default(250), maxDelay: duration.default(5_000) })
    .strict()
    .prefault({}),
  /**
   * How far event times may step backwards along a twin's log (clock steps, owner changes) and
   * still be found by time-range history reads.
   */
  historyClockSkew: durationSchema.default(5 * 60_000),
  /** Shards of the cluster: `dueReminders("all")` reads shards 0 .. shards-1. */
  shards: z.number().int().min(1).max(65_536).default(256),
};

/**
 * The settings as the node's configuration takes them (`store: { kind: "cassandra", ... }`):
 * all but `shards`, which the node passes from its own `shards`.
 */
export const cassandraNodeStoreShape = (() => {
  const { shards: _shards, ...rest } = cassandraSettingsShape;
  return rest;
})();

/** The schema of the store's settings (without `kind`). */
export const cassandraSettingsSchema = z.object(cassandraSettingsShape).strict();

/** Settings as written by a user (durations as text or ms, levels by name, defaults optional). */
export type CassandraSettingsInput = z.input<typeof cassandraSettingsSchema>;

/** Settings with defaults applied: durations in ms, consistency levels as driver codes. */
export type CassandraStoreConfig = z.output<typeof cassandraSettingsSchema>;

/**
 * Validates and completes store settings. Fails with `InvalidArgument` naming each bad field
 * (`cassandra.keyspace: must be ...`).
 */
export function compileCassandraSettings(input: unknown, source = "cassandra"): CassandraStoreConfig {
  const parsed = cassandraSettingsSchema.safeParse(input ?? {});
  if (!parsed.success) throw new InvalidArgument(`${source}: ${describeIssues(parsed.error, "")}`);
  return parsed.data;
}

/**
 * Splits a comma-separated list of contact points (`"10.0.0.1:9042,10.0.0.2"`, as given to
 * `--cassandra` or `DOPPEL_CASSANDRA`). Fails with `InvalidArgument` for an empty list or a
 * malformed entry.
 */
export function parseContactPoints(text: string): string[] {
  const points = text
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (points.length === 0) throw new InvalidArgument("no Cassandra contact points given (host:port,...)");
  for (const point of points) {
    if (!CONTACT_POINT_PATTERN.test(point)) {
      throw new InvalidArgument(`Cassandra contact point '${point}' is not host or host:port`);
    }
  }
  return points;
}

/** The CQL replication map literal for `CREATE KEYSPACE`; every part was validated by the schema. */
export function replicationCql(replication: Replication): string {
  if (replication.class === "SimpleStrategy") {
    return `{'class': 'SimpleStrategy', 'replication_factor': ${Math.trunc(replication.replicationFactor)}}`;
  }
  const dcs = Object.entries(replication.dataCenters).map(([dc, n]) => {
    if (!DATA_CENTER_PATTERN.test(dc)) throw new InvalidArgument(`bad data center name '${dc}'`);
    return `'${dc}': ${Math.trunc(n)}`;
  });
  return `{'class': 'NetworkTopologyStrategy', ${dcs.join(", ")}}`;
}

/** Name of a consistency code, for messages. */
export function levelName(code: number): string {
  const all: Record<string, number> = { ...CONSISTENCY_LEVELS, ...SERIAL_LEVELS };
  return Object.entries(all).find(([, c]) => c === code)?.[0] ?? `level ${code}`;
}
