/**
 * The Cassandra schema of the event store and how it evolves: an ordered list of versioned
 * migrations, applied by the runtime when a store opens, and the keyspace's layout parameters.
 *
 * Tables (all in the configured keyspace):
 * - `events`: the log, the truth. Partition `(twin_type, twin_id, bucket)`, `bucket` =
 *   `floor((seq - 1) / eventsPerBucket)`, so a partition holds at most `eventsPerBucket` sequence
 *   numbers. Clustered by `(seq, commit_id)`: two writers appending at the same seq both keep their
 *   row, so a fork is seen (and refused) instead of one write silently replacing the other. Each
 *   row records the writer's node and lease epoch.
 * - `event_buckets`: per twin, the buckets that exist with the seq and time of their first event,
 *   written by the commit that opens a bucket. Time-range history reads use it to skip buckets.
 * - `twins`: one partition per twin. Static columns: the log's head (`head_seq`, `head_epoch`: the
 *   last committed sequence number and the lease epoch of its writer, advanced only by a
 *   lightweight transaction, see `commit-writer.ts`), the plan of the commit that set the head
 *   (`staged_commit`, so whoever loads the twin can complete it), the latest snapshot (written
 *   `USING TIMESTAMP seq`, so an older snapshot can never replace a newer one, whatever the
 *   order of arrival) and the quarantine mark.
 *   Rows: the twin's reminders (name -> shard, due time), to maintain the index below.
 * - `views`: the query projection. Partition `(twin_type, vbucket)`, `vbucket` = hash(id) mod
 *   `viewBuckets`, clustered by id: a query pages one type by merging its partitions in id order,
 *   never scanning other types. Written `USING TIMESTAMP version`.
 * - `reminder_index`: due reminders by shard, clustered by due time: a poll reads the due prefix
 *   of each owned shard's partition.
 * - `telemetry`: numeric samples, apart from state events. Partition `(twin_type, twin_id,
 *   time_window)`; clustered by `(at, sample)`, where `sample` is a random uuid so samples at the
 *   same millisecond are all kept. `telemetry_windows` lists the windows of a twin that hold data.
 * - snapshots (in `twins`) keep `shadow_meta` (the device's high-water mark and the reported
 *   field times); views keep `reported_at` (the field times GetTwin shows).
 * - `twin_creations`: twins created per principal under a quota, changed only by lightweight
 *   transactions (see `creations.ts`).
 * - `layout`: the layout parameters above, fixed when the keyspace is first used.
 * - `schema_migrations`, `migration_lock`: migration bookkeeping.
 *
 * Rules for adding a migration: append it (never edit a released one), give it the next version,
 * make every statement idempotent (`IF NOT EXISTS` / `IF EXISTS`), and use no input except the
 * keyspace name (validated by `options.ts`).
 */
import { KEYSPACE_PATTERN } from "./options.ts";

/** One step of the schema, applied once, in order. */
export interface Migration {
  /** Version reached after this step (1, 2, 3...). */
  readonly version: number;
  /** What the step does, recorded in `schema_migrations`. */
  readonly description: string;
  /** The CQL statements for keyspace `ks`, run in order. */
  readonly statements: (ks: string) => readonly string[];
}

/** Every migration, ascending. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description:
      "events, event buckets, twins (snapshot, quarantine, reminders), views, reminder index, telemetry",
    statements: (ks) => [
      `CREATE TABLE IF NOT EXISTS ${ks}.events (
        twin_type text, twin_id text, bucket int, seq bigint, commit_id text,
        event_type text, data text, at bigint, causation text,
        writer_node text, writer_epoch bigint,
        PRIMARY KEY ((twin_type, twin_id, bucket), seq, commit_id)
      ) WITH CLUSTERING ORDER BY (seq ASC, commit_id ASC)`,
      `CREATE TABLE IF NOT EXISTS ${ks}.event_buckets (
        twin_type text, twin_id text, bucket int, first_seq bigint, first_at bigint,
        PRIMARY KEY ((twin_type, twin_id), bucket)
      )`,
      `CREATE TABLE IF NOT EXISTS ${ks}.twins (
        twin_type text, twin_id text, reminder text,
        snapshot_seq bigint static, snapshot_at bigint static, created_at bigint static,
        state text static, reported text static, desired text static,
        reminders text static, recent text static,
        quarantine_reason text static, quarantined_at bigint static,
        staged_seq bigint static, staged_commit text static,
        shard int, due_at bigint,
        PRIMARY KEY ((twin_type, twin_id), reminder)
      )`,
      `CREATE TABLE IF NOT EXISTS ${ks}.views (
        twin_type text, vbucket int, twin_id text, version bigint,
        state text, reported text, desired text, delta text,
        created_at bigint, updated_at bigint,
        PRIMARY KEY ((twin_type, vbucket), twin_id)
      ) WITH CLUSTERING ORDER BY (twin_id ASC)`,
      // Fired reminders leave tombstones at the head of a shard's partition; a short grace period
      // lets compaction drop them sooner (a resurrected entry is harmless: twins check their state).
      `CREATE TABLE IF NOT EXISTS ${ks}.reminder_index (
        shard int, due_at bigint, twin_type text, twin_id text, name text,
        PRIMARY KEY ((shard), due_at, twin_type, twin_id, name)
      ) WITH gc_grace_seconds = 86400
        AND compaction = {'class': 'LeveledCompactionStrategy'}`,
      `CREATE TABLE IF NOT EXISTS ${ks}.telemetry (
        twin_type text, twin_id text, time_window bigint, at bigint, sample uuid,
        metrics map<text, double>,
        PRIMARY KEY ((twin_type, twin_id, time_window), at, sample)
      ) WITH CLUSTERING ORDER BY (at ASC, sample ASC)
        AND compaction = {'class': 'TimeWindowCompactionStrategy',
                          'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}`,
      `CREATE TABLE IF NOT EXISTS ${ks}.telemetry_windows (
        twin_type text, twin_id text, time_window bigint,
        PRIMARY KEY ((twin_type, twin_id), time_window)
      )`,
      `CREATE TABLE IF NOT EXISTS ${ks}.layout (name text PRIMARY KEY, value bigint)`,
    ],
  },
  {
    version: 2,
    description:
      "twins: the log head (head_seq, head_epoch), advanced by a lightweight transaction per commit (fencing)",
    statements: (ks) => [
      `ALTER TABLE ${ks}.twins ADD IF NOT EXISTS head_seq bigint static`,
      `ALTER TABLE ${ks}.twins ADD IF NOT EXISTS head_epoch bigint static`,
    ],
  },
  {
    version: 3,
    description:
      "twins.shadow_meta (device high-water mark, reported field times in snapshots), views.reported_at",
    statements: (ks) => [
      `ALTER TABLE ${ks}.twins ADD IF NOT EXISTS shadow_meta text static`,
      `ALTER TABLE ${ks}.views ADD IF NOT EXISTS reported_at text`,
    ],
  },
  {
    version: 4,
    description: "events.principal (who asked for the event: the audit trail)",
    statements: (ks) => [`ALTER TABLE ${ks}.events ADD IF NOT EXISTS principal text`],
  },
  {
    version: 5,
    description: "twin_creations (twins created per principal, for the maxTwins quota)",
    statements: (ks) => [
      `CREATE TABLE IF NOT EXISTS ${ks}.twin_creations (principal text PRIMARY KEY, created bigint)`,
    ],
  },
  {
    version: 6,
    description:
      "twins.staged_commit may hold a deflated plan ('deflate:' + base64, see commit-plan.ts): code before schema 6 cannot read it, and refuses the keyspace",
    statements: () => [],
  },
];

/** The schema version this code reads and writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

/** Bookkeeping tables created before any migration runs (idempotent). */
export function bootstrapStatements(ks: string): readonly string[] {
  checkKeyspace(ks);
  return [
    `CREATE TABLE IF NOT EXISTS ${ks}.schema_migrations (
      version int PRIMARY KEY, description text, applied_at timestamp
    )`,
    `CREATE TABLE IF NOT EXISTS ${ks}.migration_lock (name text PRIMARY KEY, owner text)`,
  ];
}

/** `CREATE KEYSPACE IF NOT EXISTS` with a replication map built by `replicationCql`. */
export function createKeyspaceStatement(ks: string, replication: string): string {
  checkKeyspace(ks);
  return `CREATE KEYSPACE IF NOT EXISTS ${ks} WITH replication = ${replication}`;
}

/** The migrations to apply to a keyspace that has `applied` versions, ascending. */
export function pendingMigrations(applied: ReadonlySet<number>): Migration[] {
  return MIGRATIONS.filter((m) => !applied.has(m.version)).sort((a, b) => a.version - b.version);
}

/** Throws unless `ks` is a safe keyspace name (it is spliced into CQL text). */
export function checkKeyspace(ks: string): void {
  if (!KEYSPACE_PATTERN.test(ks)) throw new Error(`unsafe keyspace name ${JSON.stringify(ks)}`);
}
