import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCode } from "../../runtime/core/errors.ts";
import type { TwinRef } from "../../runtime/core/ids.ts";
import type { TwinCommit } from "../../runtime/core/records.ts";
import { SCHEMA_VERSION } from "../../runtime/persistence/sqlite-schema.ts";
import { SqliteEventStore } from "../../runtime/persistence/sqlite-store.ts";
import { describeEventStoreContract } from "./event-store-contract.ts";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const STORE_MODULE = pathToFileURL(path.join(REPO_ROOT, "runtime/persistence/sqlite-store.ts")).href;

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "doppel-sqlite-"));
}

describeEventStoreContract(
  "SqliteEventStore (file)",
  async () => {
    const dir = tempDir();
    const file = path.join(dir, "store.db");
    let current = new SqliteEventStore({ path: file });
    const others: SqliteEventStore[] = [];
    return {
      store: current,
      reopen: async () => {
        await current.close();
        current = new SqliteEventStore({ path: file });
        return current;
      },
      another: async () => {
        const other = new SqliteEventStore({ path: file });
        others.push(other);
        return other;
      },
      cleanup: async () => {
        for (const other of others) await other.close();
        await current.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  { durable: true, shared: true },
);

describeEventStoreContract(
  "SqliteEventStore (:memory:, synchronous=normal)",
  async () => {
    const store = new SqliteEventStore({ path: ":memory:", synchronous: "normal" });
    return { store, cleanup: () => store.close() };
  },
  { durable: false },
);

function commitFor(ref: TwinRef, expectedSeq: number, commitId = `${ref.id}-${expectedSeq}`): TwinCommit {
  const seq = expectedSeq + 1;
  return {
    ref,
    shard: 0,
    expectedSeq,
    events: [
      {
        seq,
        type: "tick",
        data: { type: "tick", seq },
        at: 1_000 + seq,
        commitId,
        writer: { node: "n", epoch: 0 },
      },
    ],
    view: {
      type: ref.type,
      id: ref.id,
      version: seq,
      state: { seq },
      reported: {},
      desired: {},
      delta: {},
      createdAt: 1_000,
      updatedAt: 1_000 + seq,
    },
    reminders: { set: [], clear: [] },
  };
}

function schemaOf(file: string): unknown[] {
  const raw = new Database(file, { readonly: true });
  try {
    return raw.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY name").all();
  } finally {
    raw.close();
  }
}

function userVersionOf(file: string): number {
  const raw = new Database(file, { readonly: true });
  try {
    return Number(raw.pragma("user_version", { simple: true }));
  } finally {
    raw.close();
  }
}

describe("SqliteEventStore", () => {
  let dir: string;
  let file: string;
  const open: SqliteEventStore[] = [];

  function openStore(options: { busyTimeoutMs?: number } = {}): SqliteEventStore {
    const store = new SqliteEventStore({ path: file, ...options });
    open.push(store);
    return store;
  }

  beforeEach(() => {
    dir = tempDir();
    file = path.join(dir, "store.db");
  });

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("schema and migrations", () => {
    it("creates the schema at the current version, in WAL mode", async () => {
      const store = openStore();
      await store.close();
      expect(userVersionOf(file)).toBe(SCHEMA_VERSION);
      const raw = new Database(file);
      expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
      raw.close();
      const names = schemaOf(file).map((row) => (row as { name: string }).name);
      expect(names).toEqual(
        expect.arrayContaining(["events", "snapshots", "views", "reminders", "quarantine", "telemetry"]),
      );
    });

    it("applies migrations once: reopening changes neither the schema nor the data", async () => {
      const ref = { type: "Pump", id: "p1" };
      const first = openStore();
      await first.commit([commitFor(ref, 0)]);
      await first.close();
      const schema = schemaOf(file);
      for (let i = 0; i < 3; i++) {
        const again = openStore();
        expect((await again.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1]);
        await again.close();
      }
      expect(schemaOf(file)).toEqual(schema);
      expect(userVersionOf(file)).toBe(SCHEMA_VERSION);
    });

    it("refuses a database whose schema version is newer than it knows, with a clear message, and leaves it untouched", () => {
      const raw = new Database(file);
      raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      raw.close();
      let failure: unknown;
      try {
        openStore();
      } catch (error) {
        failure = error;
      }
      expect(failure).toMatchObject({ code: ErrorCode.FailedPrecondition });
      expect((failure as Error).message).toContain(
        `database schema version ${SCHEMA_VERSION + 1} is newer than this Doppel supports (${SCHEMA_VERSION})`,
      );
      expect(userVersionOf(file)).toBe(SCHEMA_VERSION + 1);
      expect(schemaOf(file)).toEqual([]);
    });

    it("rolls a failed migration back completely and reports Unavailable", () => {
      const raw = new Database(file);
      raw.exec("CREATE TABLE reminders (x)"); // collides with a table the first migration creates
      raw.close();
      expect(() => openStore()).toThrow(expect.objectContaining({ code: ErrorCode.Unavailable }));
      expect(userVersionOf(file)).toBe(0);
      expect(schemaOf(file).map((row) => (row as { name: string }).name)).toEqual(["reminders"]);
    });

    it("fails with Unavailable when the database file cannot be opened", () => {
      file = path.join(dir, "missing-folder", "store.db");
      expect(() => openStore()).toThrow(expect.objectContaining({ code: ErrorCode.Unavailable }));
    });
  });

  describe("group commit", () => {
    const type = "Meter";
    const refs = Array.from({ length: 1000 }, (_, i) => ({ type, id: `m-${String(i).padStart(4, "0")}` }));
    const seeded = refs.filter((_, i) => i % 100 === 7);

    it("writes a group of 1000 twins as one transaction: a failure in its last commit rolls back all of them", async () => {
      const store = openStore();
      await store.commit(seeded.map((ref) => commitFor(ref, 0, "seed")));
      // A trigger, installed from another connection, fails the very last write of the group.
      const raw = new Database(file);
      raw.exec(`CREATE TRIGGER fail_last BEFORE INSERT ON views WHEN NEW.twin_id = 'm-0999'
                BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
      const group = refs.map((ref) => commitFor(ref, 0));
      const failure = await store.commit(group).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toMatchObject({ code: ErrorCode.Unavailable });
      expect((failure as Error).cause).toBeInstanceOf(Database.SqliteError);
      const counts = raw
        .prepare<[string], { n: number }>("SELECT count(*) AS n FROM events WHERE twin_type = ?")
        .get(type);
      expect(counts?.n).toBe(seeded.length);
      expect(raw.prepare("SELECT count(*) AS n FROM views").get()).toEqual({ n: seeded.length });

      // Without the fault the same group lands, with a conflict for each already-seeded twin only.
      raw.exec("DROP TRIGGER fail_last");
      raw.close();
      const results = await store.commit(group);
      const conflicted = refs.filter((_, i) => results[i] !== undefined);
      expect(conflicted).toEqual(seeded);
      expect(
        results.filter((r) => r !== undefined).every((r) => r?.code === ErrorCode.ConcurrencyConflict),
      ).toBe(true);
      for (const [i, ref] of refs.entries()) {
        const events = await store.readEvents(ref, 0);
        expect(events).toHaveLength(1);
        expect(events[0]?.commitId).toBe(seeded.includes(ref) ? "seed" : group[i]?.events[0]?.commitId);
      }
    });

    it("refuses one malformed commit without failing the rest of the group", async () => {
      const store = openStore();
      const good = commitFor({ type, id: "good" }, 0);
      const bad = { ...commitFor({ type, id: "bad" }, 0), expectedSeq: 5 };
      const results = await store.commit([bad, good]);
      expect(results[0]?.code).toBe(ErrorCode.InvalidArgument);
      expect(results[1]).toBeUndefined();
      expect(await store.readEvents({ type, id: "bad" }, 0)).toEqual([]);
      expect(await store.readEvents({ type, id: "good" }, 0)).toHaveLength(1);
    });
  });

  describe("failures", () => {
    it("maps a database locked by another connection to Unavailable with the SQLite error as cause", async () => {
      const store = openStore({ busyTimeoutMs: 20 });
      const ref = { type: "Valve", id: "v1" };
      const raw = new Database(file);
      raw.exec("BEGIN IMMEDIATE");
      const failure = await store.commit([commitFor(ref, 0)]).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toMatchObject({ code: ErrorCode.Unavailable, details: { sqliteCode: "SQLITE_BUSY" } });
      expect((failure as Error).cause).toBeInstanceOf(Database.SqliteError);
      raw.exec("ROLLBACK");
      raw.close();
      expect(await store.commit([commitFor(ref, 0)])).toEqual([undefined]);
    });
  });

  describe("durability", () => {
    it("keeps every acknowledged commit when the writing process is killed", async () => {
      const child = path.join(dir, "writer.mjs");
      fs.writeFileSync(
        child,
        `const [storeModule, dbPath] = process.argv.slice(2);
const { SqliteEventStore } = await import(storeModule);
const store = new SqliteEventStore({ path: dbPath });
const ref = { type: "Crash", id: "c1" };
for (let seq = 1; seq <= 100000; seq++) {
  const event = { seq, type: "tick", data: { type: "tick", seq }, at: seq, commitId: "c" + seq, writer: { node: "child", epoch: 0 } };
  const view = { type: "Crash", id: "c1", version: seq, state: { seq }, reported: {}, desired: {}, delta: {}, createdAt: 1, updatedAt: seq };
  const [error] = await store.commit([{ ref, shard: 0, expectedSeq: seq - 1, events: [event], view, reminders: { set: [], clear: [] } }]);
  if (error) { console.error(error); process.exit(2); }
  process.stdout.write("ack " + seq + "\\n");
}
`,
      );
      const proc = spawn(
        process.execPath,
        ["--conditions=source", "--import", "tsx", child, STORE_MODULE, file],
        {
          cwd: REPO_ROOT,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      let err = "";
      let acked = 0;
      proc.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString();
      });
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
        proc.on("exit", (code, signal) => resolve(signal ?? code)),
      );
      proc.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const lines = out.split("\n");
        out = lines.pop() ?? "";
        for (const line of lines) acked = Math.max(acked, Number(line.replace("ack ", "")));
        if (acked >= 200) proc.kill("SIGKILL");
      });
      const ending = await exited;
      expect(err).toBe("");
      expect(ending).toBe("SIGKILL");
      expect(acked).toBeGreaterThanOrEqual(200);

      const raw = new Database(file);
      expect(raw.pragma("integrity_check", { simple: true })).toBe("ok");
      raw.close();
      const store = openStore();
      const ref = { type: "Crash", id: "c1" };
      const events = await store.readEvents(ref, 0);
      expect(events.length).toBeGreaterThanOrEqual(acked);
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
      expect((await store.readView(ref))?.version).toBe(events.length);
    }, 60_000);
  });
});
