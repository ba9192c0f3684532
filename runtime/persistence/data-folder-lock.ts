/**
 * One node per data folder. Two nodes on one embedded store would both write the same twins and
 * quarantine them; the second is refused at start-up instead, with a message naming the folder.
 *
 * The lock is an operating-system file lock, not a marker file: `doppel.lock` in the folder is a
 * small SQLite database that the node holds an exclusive transaction on for as long as it runs
 * (SQLite's own locks: POSIX advisory locks on Unix, LockFileEx on Windows). The kernel drops the
 * lock when the process ends in any way, kill -9 included, so a stale lock never blocks a
 * restart; and a recycled process id can never keep a folder locked. The holder's pid is written
 * beside it (`doppel.lock.pid`), for the message only.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { FailedPrecondition, Unavailable } from "../core/errors.ts";

/** A held data folder lock. */
export interface DataFolderLock {
  readonly folder: string;
  /** Gives the folder up (idempotent). */
  release(): void;
}

const LOCK_FILE = "doppel.lock";
const PID_FILE = "doppel.lock.pid";

/**
 * Locks `folder` (which must exist) for this node. Fails with `FailedPrecondition` naming the
 * folder (and the holder's pid when known) if another node holds it, and with `Unavailable` if
 * the lock file cannot be created.
 */
export function lockDataFolder(folder: string): DataFolderLock {
  const absolute = resolve(folder);
  let db: Database.Database;
  try {
    db = new Database(join(absolute, LOCK_FILE), { timeout: 0 });
  } catch (error) {
    throw new Unavailable(`cannot lock data folder ${absolute}: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  }
  try {
    // Exclusive locking mode keeps the lock after the transaction's statements; BEGIN EXCLUSIVE
    // takes it now and fails at once (timeout 0) when another connection holds it.
    db.pragma("locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
  } catch (error) {
    db.close();
    if ((error as { code?: unknown }).code === "SQLITE_BUSY") {
      const holder = holderPid(absolute);
      throw new FailedPrecondition(
        `data folder ${absolute} is in use by another Doppel node${holder ? ` (pid ${holder})` : ""}: stop it, or give this node another data folder (--data or DOPPEL_DATA_DIR)`,
        { folder: absolute, ...(holder ? { pid: holder } : {}) },
      );
    }
    throw new Unavailable(`cannot lock data folder ${absolute}: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  }
  try {
    writeFileSync(join(absolute, PID_FILE), `${process.pid}\n`);
  } catch {
    // The pid file only improves the message another node prints.
  }
  let held = true;
  return {
    folder: absolute,
    release() {
      if (!held) return;
      held = false;
      try {
        rmSync(join(absolute, PID_FILE), { force: true });
      } finally {
        db.close();
      }
    },
  };
}

function holderPid(folder: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(folder, PID_FILE), "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
