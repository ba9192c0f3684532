/**
 * The event store a node opens from its configuration: in memory, embedded SQLite (the default,
 * in the data folder, which it locks: see persistence/data-folder-lock.ts) or Cassandra. Drivers load only when chosen, so a node on one store never
 * loads the others.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../observability/logger.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { MemoryEventStore } from "../persistence/memory-store.ts";
import type { NodeConfig } from "./options.ts";

/**
 * How many twins each principal has created under its quota (`EventStore.twinsCreated`), read
 * from the configured store while a node may be running on it: the SQLite database is opened
 * beside the node (WAL: readers do not block it; the data folder's lock is not taken), and
 * nothing is created when it does not exist yet (all counts 0). The memory store has no counts.
 * Fails with `Unavailable` when the store cannot be reached.
 */
export async function readTwinsCreated(
  config: NodeConfig,
  principals: readonly string[],
): Promise<Map<string, number>> {
  const counts = new Map(principals.map((principal) => [principal, 0]));
  let store: EventStore;
  switch (config.store.kind) {
    case "memory":
      return counts;
    case "sqlite": {
      const path = config.store.path ?? join(config.dataDir, "doppel.db");
      if (principals.length === 0 || !existsSync(path)) return counts;
      const { SqliteEventStore } = await import("../persistence/sqlite-store.ts");
      store = new SqliteEventStore({ path });
      break;
    }
    case "cassandra": {
      if (principals.length === 0) return counts;
      const { CassandraEventStore } = await import("../persistence/cassandra/store.ts");
      const { kind: _kind, ...settings } = config.store;
      store = await CassandraEventStore.openConfigured({ ...settings, shards: config.shards });
      break;
    }
  }
  try {
    for (const principal of principals) counts.set(principal, await store.twinsCreated(principal));
  } finally {
    await store.close();
  }
  return counts;
}

/** Opens the configured store. Fails with `Unavailable` when it cannot be reached or opened. */
export async function openStore(config: NodeConfig, logger: Logger): Promise<EventStore> {
  switch (config.store.kind) {
    case "memory":
      return new MemoryEventStore();
    case "sqlite": {
      const [{ SqliteEventStore }, { lockDataFolder }] = await Promise.all([
        import("../persistence/sqlite-store.ts"),
        import("../persistence/data-folder-lock.ts"),
      ]);
      mkdirSync(config.dataDir, { recursive: true });
      // One node per data folder: a second one is refused here, before it opens the database.
      const lock = lockDataFolder(config.dataDir);
      let store: InstanceType<typeof SqliteEventStore>;
      try {
        store = new SqliteEventStore({
          path: config.store.path ?? join(config.dataDir, "doppel.db"),
          synchronous: config.store.synchronous,
        });
      } catch (error) {
        lock.release();
        throw error;
      }
      const closeStore = store.close.bind(store);
      store.close = async () => {
        try {
          await closeStore();
        } finally {
          lock.release();
        }
      };
      return store;
    }
    case "cassandra": {
      const { CassandraEventStore } = await import("../persistence/cassandra/store.ts");
      const { kind: _kind, ...settings } = config.store;
      return CassandraEventStore.openConfigured(
        { ...settings, shards: config.shards },
        {
          onRetry: (attempt, delayMs, error) =>
            logger.warn({ attempt, retryInMs: delayMs, err: error.message }, "Cassandra not reachable yet"),
        },
      );
    }
  }
}
