/**
 * The SQLite schema of the embedded event store and how it evolves: an ordered list of migrations,
 * the version reached recorded in `PRAGMA user_version`. Opening a database applies the missing
 * migrations in one transaction; a database written by a newer Doppel is refused, never guessed at.
 *
 * Rules for adding a migration: append it (never edit a released one), give it the next version,
 * and keep it pure SQL with no input from outside this file.
 */
import type Database from "better-sqlite3";
import { FailedPrecondition } from "../core/errors.ts";

/** One step of the schema: applied once, in order, to bring a database from `version - 1` to `version`. */
export interface Migration {
  /** The `user_version` the database has after this step (1, 2, 3...). */
  readonly version: number;
  /** What the step does, for logs and reviewers. */
  readonly description: string;
  /** The statements, run with `exec` inside the migration transaction. */
  readonly sql: string;
}

/**
 * Every migration, ascending. Table layout (all keyed by the twin's `twin_type, twin_id`):
 * - `events`: the log, the truth; clustered by (twin, seq) so a twin's log is one range scan.
 * - `snapshots`: the latest snapshot per twin (large rows, read by key only: an ordinary rowid table).
 * - `views`: the query projection; clustered by (type, id) so a page of a query is a range scan.
 * - `reminders`: the reminder index; indexed by due time and by (shard, due time).
 * - `quarantine`: twins that refuse work, with the reason.
 * - `telemetry`: numeric samples; `sample_no` numbers samples of one twin within one millisecond.
 * - (2) `snapshots.shadow_meta`: the device's high-water mark and the reported field times;
 *   `views.reported_at`: the reported field times.
 * - (3) `events.principal`: who asked for the event (audit trail); NULL when nobody did.
 * - (4) `claims`: the lease epoch each twin was last claimed at by an activating writer (fencing
 *   at activation: a commit of an older epoch is refused).
 * - (5) `twin_creations`: how many twins each principal with a quota has created (counted by the
 *   commit that creates a twin, in its transaction).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "events, snapshots, views, reminder index, quarantine, telemetry",
    sql: `
      CREATE TABLE events (
        twin_type    TEXT    NOT NULL,
        twin_id      TEXT    NOT NULL,
        seq          INTEGER NOT NULL,
        event_type   TEXT    NOT NULL,
        data         TEXT    NOT NULL, -- JSON object
        at           INTEGER NOT NULL, -- epoch ms
        commit_id    TEXT    NOT NULL,
        causation    TEXT,
        writer_node  TEXT    NOT NULL,
        writer_epoch INTEGER NOT NULL,
        PRIMARY KEY (twin_type, twin_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX events_by_time ON events (twin_type, twin_id, at);

      CREATE TABLE snapshots (
        twin_type  TEXT    NOT NULL,
        twin_id    TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        at         INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        state      TEXT    NOT NULL, -- JSON object
        reported   TEXT    NOT NULL, -- JSON object
        desired    TEXT    NOT NULL, -- JSON object
        reminders  TEXT    NOT NULL, -- JSON array of ReminderState
        recent     TEXT    NOT NULL, -- JSON array of strings
        PRIMARY KEY (twin_type, twin_id)
      );

      CREATE TABLE views (
        twin_type  TEXT    NOT NULL,
        twin_id    TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        state      TEXT    NOT NULL, -- JSON object
        reported   TEXT    NOT NULL, -- JSON object
        desired    TEXT    NOT NULL, -- JSON object
        delta      TEXT    NOT NULL, -- JSON object
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (twin_type, twin_id)
      ) WITHOUT ROWID;

      CREATE TABLE reminders (
        twin_type TEXT    NOT NULL,
        twin_id   TEXT    NOT NULL,
        name      TEXT    NOT NULL,
        shard     INTEGER NOT NULL,
        due_at    INTEGER NOT NULL,
        PRIMARY KEY (twin_type, twin_id, name)
      ) WITHOUT ROWID;
      -- (due_at) implicitly ends with the primary key, so "all shards" reads in result order.
      CREATE INDEX reminders_due ON reminders (due_at);
      CREATE INDEX reminders_by_shard ON reminders (shard, due_at);

      CREATE TABLE quarantine (
        twin_type TEXT    NOT NULL,
        twin_id   TEXT    NOT NULL,
        reason    TEXT    NOT NULL,
        at        INTEGER NOT NULL, -- epoch ms when it was quarantined
        PRIMARY KEY (twin_type, twin_id)
      ) WITHOUT ROWID;

      CREATE TABLE telemetry (
        twin_type TEXT    NOT NULL,
        twin_id   TEXT    NOT NULL,
        at        INTEGER NOT NULL, -- epoch ms
        sample_no INTEGER NOT NULL, -- 0, 1, 2... among samples of this twin at this ms
        metrics   TEXT    NOT NULL, -- JSON object of numbers
        PRIMARY KEY (twin_type, twin_id, at, sample_no)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: "snapshots.shadow_meta (device high-water mark, reported field times), views.reported_at",
    sql: `
      ALTER TABLE snapshots ADD COLUMN shadow_meta TEXT NOT NULL DEFAULT '{}'; -- JSON { deviceSeq, reportedAt }
      ALTER TABLE views ADD COLUMN reported_at TEXT; -- JSON object in the shape of reported; NULL: none
    `,
  },
  {
    version: 3,
    description: "events.principal (who asked for the event: the audit trail)",
    sql: `
      ALTER TABLE events ADD COLUMN principal TEXT; -- principalLabel; NULL: none recorded
    `,
  },
  {
    version: 4,
    description: "claims (the lease epoch each twin was claimed at by the writer that activated it)",
    sql: `
      CREATE TABLE claims (
        twin_type TEXT    NOT NULL,
        twin_id   TEXT    NOT NULL,
        epoch     INTEGER NOT NULL,
        PRIMARY KEY (twin_type, twin_id)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    description: "twin_creations (twins created per principal, for the maxTwins quota)",
    sql: `
      CREATE TABLE twin_creations (
        principal TEXT    NOT NULL PRIMARY KEY, -- principalLabel
        created   INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
];

/** The schema version this code reads and writes: the version of the last migration. */
export const SCHEMA_VERSION: number = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

/**
 * Brings `db` to {@link SCHEMA_VERSION}: applies every migration newer than its `user_version`, all
 * in one `BEGIN IMMEDIATE` transaction (so two processes opening the same file cannot both migrate,
 * and a failed migration leaves the database as it was). Running it again is a no-op.
 * Returns the version the database had before.
 *
 * Fails with `FailedPrecondition` when the database's version is newer than this code knows (it
 * was written by a newer Doppel; reading it could misinterpret or corrupt data), and rethrows
 * SQLite's error when a migration fails.
 */
export function migrate(db: Database.Database, label: string): number {
  const apply = db.transaction((): number => {
    const found = userVersion(db);
    if (found > SCHEMA_VERSION) {
      throw new FailedPrecondition(
        `${label}: database schema version ${found} is newer than this Doppel supports (${SCHEMA_VERSION}); ` +
          "upgrade Doppel, or point it at another database file",
        { found, supported: SCHEMA_VERSION },
      );
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= found) continue;
      db.exec(migration.sql);
      // The version is a number from the list above, never input: safe to put in the pragma.
      db.pragma(`user_version = ${Math.trunc(migration.version)}`);
    }
    return found;
  });
  return apply.immediate();
}

/** The `PRAGMA user_version` of `db` (0 for a new database). */
export function userVersion(db: Database.Database): number {
  return Number(db.pragma("user_version", { simple: true }));
}
