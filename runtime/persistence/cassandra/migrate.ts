/**
 * Brings a keyspace to {@link SCHEMA_VERSION} and settles its layout, when a store opens:
 *
 * 1. `CREATE KEYSPACE IF NOT EXISTS` with the configured replication (an existing keyspace keeps
 *    its own), then the bookkeeping tables.
 * 2. Reads `schema_migrations`. A version newer than this code knows fails with
 *    `FailedPrecondition` (the keyspace was written by a newer Doppel; nothing is touched). If
 *    migrations are missing, takes the migration lock (a lightweight transaction on
 *    `migration_lock`, expiring after 120 s if its holder dies), applies them in order, records
 *    each, and releases the lock. Other nodes starting at the same moment wait for the lock
 *    rather than run the same DDL concurrently (concurrent schema changes can disagree).
 * 3. Settles the layout: each parameter is inserted `IF NOT EXISTS`; the value already recorded
 *    wins. A parameter the caller set explicitly to something else fails with
 *    `FailedPrecondition` (rows are keyed by it: reading with another value would miss data).
 */
import { randomUUID } from "node:crypto";
import { FailedPrecondition, Unavailable } from "../../core/errors.ts";
import type { CassandraStoreConfig } from "./options.ts";
import { LAYOUT_DEFAULTS, replicationCql } from "./options.ts";
import { toNumber } from "./rows.ts";
import { bootstrapStatements, createKeyspaceStatement, pendingMigrations, SCHEMA_VERSION } from "./schema.ts";
import type { CassandraSession } from "./session.ts";
import type { Statements } from "./statements.ts";

/** The keyspace's layout: how rows are bucketed. */
export interface Layout {
  readonly eventsPerBucket: number;
  readonly viewBuckets: number;
  readonly telemetryWindowMs: number;
}

/** How long a node waits for another node's migration before giving up. */
const LOCK_WAIT_MS = 150_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function appliedVersions(session: CassandraSession, s: Statements): Promise<Set<number>> {
  const rows = await session.readAll("read schema version", { query: s.appliedMigrations, params: [] });
  return new Set(rows.map((row) => toNumber(row["version"], "version")));
}

function refuseNewer(applied: ReadonlySet<number>, label: string): void {
  const newest = Math.max(0, ...applied);
  if (newest > SCHEMA_VERSION) {
    throw new FailedPrecondition(
      `${label}: keyspace schema version ${newest} is newer than this Doppel supports (${SCHEMA_VERSION}); ` +
        "upgrade Doppel, or point it at another keyspace",
      { found: newest, supported: SCHEMA_VERSION },
    );
  }
}

/** Applies missing migrations (see the module comment). Returns the versions applied now. */
export async function migrate(
  session: CassandraSession,
  config: CassandraStoreConfig,
  s: Statements,
): Promise<number[]> {
  const ks = config.keyspace;
  await session.ddl("create keyspace", createKeyspaceStatement(ks, replicationCql(config.replication)));
  for (const cql of bootstrapStatements(ks)) await session.ddl("create bookkeeping tables", cql);
  let applied = await appliedVersions(session, s);
  refuseNewer(applied, session.label);
  if (pendingMigrations(applied).length === 0) return [];

  const owner = randomUUID();
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (
    !(await session.conditional("take migration lock", { query: s.lockMigrations, params: [owner] })).applied
  ) {
    if (Date.now() > deadline) {
      throw new Unavailable(
        `${session.label}: another node has held the migration lock for over ${LOCK_WAIT_MS / 1000} s`,
      );
    }
    await sleep(500);
  }
  const done: number[] = [];
  try {
    applied = await appliedVersions(session, s);
    refuseNewer(applied, session.label);
    for (const migration of pendingMigrations(applied)) {
      for (const cql of migration.statements(ks)) await session.ddl(`migration ${migration.version}`, cql);
      await session.execute("record migration", {
        query: s.recordMigration,
        params: [migration.version, migration.description, new Date()],
      });
      done.push(migration.version);
    }
  } finally {
    await session
      .conditional("release migration lock", { query: s.unlockMigrations, params: [owner] })
      .catch(() => {});
  }
  return done;
}

/** Settles the keyspace's layout (see the module comment) and returns it. */
export async function settleLayout(
  session: CassandraSession,
  config: CassandraStoreConfig,
  s: Statements,
): Promise<Layout> {
  const wanted: Record<keyof Layout, { value: number; explicit: boolean }> = {
    eventsPerBucket: {
      value: config.eventsPerBucket ?? LAYOUT_DEFAULTS.eventsPerBucket,
      explicit: config.eventsPerBucket !== undefined,
    },
    viewBuckets: {
      value: config.viewBuckets ?? LAYOUT_DEFAULTS.viewBuckets,
      explicit: config.viewBuckets !== undefined,
    },
    telemetryWindowMs: {
      value: config.telemetryWindow ?? LAYOUT_DEFAULTS.telemetryWindowMs,
      explicit: config.telemetryWindow !== undefined,
    },
  };
  const recorded = new Map<string, number>();
  for (const row of await session.readAll("read layout", { query: s.readLayout, params: [] })) {
    recorded.set(String(row["name"]), toNumber(row["value"], "value"));
  }
  const layout: Record<string, number> = {};
  for (const [name, { value, explicit }] of Object.entries(wanted)) {
    let stored = recorded.get(name);
    if (stored === undefined) {
      const result = await session.conditional("record layout", {
        query: s.initLayout,
        params: [name, value],
      });
      stored = result.applied ? value : toNumber(result.row?.["value"], "value");
    }
    if (explicit && stored !== value) {
      throw new FailedPrecondition(
        `${session.label}: the keyspace was created with ${name} = ${stored}, not ${value}; ` +
          `leave ${name} unset to use the keyspace's value, or use another keyspace`,
        { setting: name, recorded: stored, requested: value },
      );
    }
    layout[name] = stored;
  }
  return layout as unknown as Layout;
}
