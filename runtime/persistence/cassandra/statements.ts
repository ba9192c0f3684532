/**
 * Every CQL statement the Cassandra store runs after its schema exists. Each one is prepared by the
 * driver on first use and executed with bound values only: nothing from a twin, a request or a
 * page token is ever spliced into CQL text. The one name spliced in is the keyspace, validated
 * against `KEYSPACE_PATTERN` when the options were compiled and again here.
 *
 * `USING TIMESTAMP ?` on derived data (views, snapshots, reminder rows) binds a timestamp taken
 * from the twin's version, not the clock: Cassandra keeps the cell with the highest timestamp, so
 * a late or repeated write of an older version can never replace a newer one.
 */
import { checkKeyspace } from "./schema.ts";

const EVENT_COLUMNS = "seq, commit_id, event_type, data, at, causation, writer_node, writer_epoch, principal";
const VIEW_COLUMNS = "twin_id, version, state, reported, desired, delta, created_at, updated_at, reported_at";
const SNAPSHOT_COLUMNS =
  "snapshot_seq, snapshot_at, created_at, state, reported, desired, reminders, recent, shadow_meta";

/** The statements of one keyspace. */
export type Statements = ReturnType<typeof statementsFor>;

/** Builds the statement texts for keyspace `ks`. */
export function statementsFor(ks: string) {
  checkKeyspace(ks);
  return {
    // ---- the log ----
    insertEvent: `INSERT INTO ${ks}.events (twin_type, twin_id, bucket, ${EVENT_COLUMNS})
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    /** The rows at and after a sequence number in one bucket: enough to judge an append. */
    headRows: `SELECT seq, commit_id FROM ${ks}.events
      WHERE twin_type = ? AND twin_id = ? AND bucket = ? AND seq >= ? LIMIT 2`,
    eventRange: `SELECT ${EVENT_COLUMNS} FROM ${ks}.events
      WHERE twin_type = ? AND twin_id = ? AND bucket = ? AND seq >= ? AND seq <= ?`,
    insertBucket: `INSERT INTO ${ks}.event_buckets (twin_type, twin_id, bucket, first_seq, first_at)
      VALUES (?, ?, ?, ?, ?)`,
    buckets: `SELECT bucket, first_seq, first_at FROM ${ks}.event_buckets WHERE twin_type = ? AND twin_id = ?`,

    // ---- per-twin singletons: snapshot, quarantine, staged commit; reminder rows ----
    twinHead: `SELECT ${SNAPSHOT_COLUMNS}, quarantine_reason, staged_seq, staged_commit, head_seq, head_epoch
      FROM ${ks}.twins WHERE twin_type = ? AND twin_id = ? LIMIT 1`,
    twinStatus: `SELECT quarantine_reason, staged_seq, staged_commit, head_seq, head_epoch
      FROM ${ks}.twins WHERE twin_type = ? AND twin_id = ? LIMIT 1`,
    /**
     * The commit point (a lightweight transaction): moves the head from `expectedSeq` to the
     * commit's last seq, only if the head is still at `expectedSeq` and no newer lease epoch has
     * written, and records the commit's plan beside it.
     */
    advanceHead: `UPDATE ${ks}.twins SET head_seq = ?, head_epoch = ?, staged_seq = ?, staged_commit = ?
      WHERE twin_type = ? AND twin_id = ? IF head_seq = ? AND head_epoch <= ?`,
    /** The commit point of a twin without a recorded head (its first commit, or a log from schema 1). */
    openHead: `UPDATE ${ks}.twins SET head_seq = ?, head_epoch = ?, staged_seq = ?, staged_commit = ?
      WHERE twin_type = ? AND twin_id = ? IF head_seq = null`,
    /**
     * The claim at activation (a lightweight transaction): raises the head's epoch to the
     * activating writer's, only if the head is still where the activation loaded it and no newer
     * epoch has claimed or written. From then on every commit point of an older epoch fails.
     */
    claimHead: `UPDATE ${ks}.twins SET head_epoch = ?
      WHERE twin_type = ? AND twin_id = ? IF head_seq = ? AND head_epoch <= ?`,
    /** The claim of a twin without a recorded head (never committed, or a log from schema 1): sets one. */
    claimOpenHead: `UPDATE ${ks}.twins SET head_seq = ?, head_epoch = ?
      WHERE twin_type = ? AND twin_id = ? IF head_seq = null`,
    twinReminders: `SELECT reminder, shard, due_at FROM ${ks}.twins WHERE twin_type = ? AND twin_id = ?`,
    writeSnapshot: `UPDATE ${ks}.twins USING TIMESTAMP ?
      SET snapshot_seq = ?, snapshot_at = ?, created_at = ?, state = ?, reported = ?, desired = ?,
          reminders = ?, recent = ?, shadow_meta = ?
      WHERE twin_type = ? AND twin_id = ?`,
    setQuarantine: `UPDATE ${ks}.twins SET quarantine_reason = ?, quarantined_at = ?
      WHERE twin_type = ? AND twin_id = ?`,
    clearQuarantine: `UPDATE ${ks}.twins SET quarantine_reason = null, quarantined_at = null
      WHERE twin_type = ? AND twin_id = ?`,
    stageCommit: `UPDATE ${ks}.twins SET staged_seq = ?, staged_commit = ? WHERE twin_type = ? AND twin_id = ?`,
    unstageCommit: `UPDATE ${ks}.twins SET staged_seq = null, staged_commit = null
      WHERE twin_type = ? AND twin_id = ?`,
    setReminderRow: `INSERT INTO ${ks}.twins (twin_type, twin_id, reminder, shard, due_at)
      VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?`,
    deleteReminderRow: `DELETE FROM ${ks}.twins USING TIMESTAMP ?
      WHERE twin_type = ? AND twin_id = ? AND reminder = ?`,

    // ---- the query projection ----
    upsertView: `INSERT INTO ${ks}.views (twin_type, vbucket, ${VIEW_COLUMNS})
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`,
    view: `SELECT ${VIEW_COLUMNS} FROM ${ks}.views WHERE twin_type = ? AND vbucket = ? AND twin_id = ?`,
    viewsAfter: `SELECT ${VIEW_COLUMNS} FROM ${ks}.views
      WHERE twin_type = ? AND vbucket = ? AND twin_id > ? LIMIT ?`,

    // ---- the reminder index ----
    setIndex: `INSERT INTO ${ks}.reminder_index (shard, due_at, twin_type, twin_id, name)
      VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?`,
    deleteIndex: `DELETE FROM ${ks}.reminder_index USING TIMESTAMP ?
      WHERE shard = ? AND due_at = ? AND twin_type = ? AND twin_id = ? AND name = ?`,
    dueInShard: `SELECT due_at, twin_type, twin_id, name FROM ${ks}.reminder_index
      WHERE shard = ? AND due_at <= ? LIMIT ?`,
    earliestInShard: `SELECT due_at FROM ${ks}.reminder_index WHERE shard = ? LIMIT 1`,

    // ---- telemetry ----
    insertSample: `INSERT INTO ${ks}.telemetry (twin_type, twin_id, time_window, at, sample, metrics)
      VALUES (?, ?, ?, ?, ?, ?)`,
    insertWindow: `INSERT INTO ${ks}.telemetry_windows (twin_type, twin_id, time_window) VALUES (?, ?, ?)`,
    windows: `SELECT time_window FROM ${ks}.telemetry_windows
      WHERE twin_type = ? AND twin_id = ? AND time_window >= ? AND time_window <= ?`,
    samples: `SELECT at, metrics FROM ${ks}.telemetry
      WHERE twin_type = ? AND twin_id = ? AND time_window = ? AND at >= ? AND at < ? LIMIT ?`,

    // ---- the twin-creation quota (lightweight transactions only, see creations.ts) ----
    twinsCreated: `SELECT created FROM ${ks}.twin_creations WHERE principal = ?`,
    firstCreation: `INSERT INTO ${ks}.twin_creations (principal, created) VALUES (?, 1) IF NOT EXISTS`,
    setCreations: `UPDATE ${ks}.twin_creations SET created = ? WHERE principal = ? IF created = ?`,

    // ---- migrations and layout ----
    appliedMigrations: `SELECT version FROM ${ks}.schema_migrations`,
    recordMigration: `INSERT INTO ${ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)`,
    lockMigrations: `INSERT INTO ${ks}.migration_lock (name, owner) VALUES ('migrate', ?) IF NOT EXISTS USING TTL 120`,
    unlockMigrations: `DELETE FROM ${ks}.migration_lock WHERE name = 'migrate' IF owner = ?`,
    initLayout: `INSERT INTO ${ks}.layout (name, value) VALUES (?, ?) IF NOT EXISTS`,
    readLayout: `SELECT name, value FROM ${ks}.layout`,
  };
}
