import { beforeAll } from "vitest";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { describeEventStoreContract } from "../../persistence/event-store-contract.ts";
import { ensureCassandra, openStore } from "./harness.ts";

beforeAll(ensureCassandra);

// Small event buckets (16 seqs per partition), so the contract's longer logs cross partition
// boundaries: the fence and the log reads must not depend on where a bucket ends.
const KEYSPACE = "doppel_it_contract_b16";
const LAYOUT = { eventsPerBucket: 16 } as const;

describeEventStoreContract(
  "CassandraEventStore",
  async () => {
    let current: CassandraEventStore = await openStore(KEYSPACE, LAYOUT);
    const others: CassandraEventStore[] = [];
    return {
      store: current,
      reopen: async () => {
        await current.close();
        current = await openStore(KEYSPACE, LAYOUT);
        return current;
      },
      another: async () => {
        const other = await openStore(KEYSPACE, LAYOUT);
        others.push(other);
        return other;
      },
      cleanup: async () => {
        for (const other of others) await other.close();
        await current.close();
      },
    };
  },
  { durable: true, shared: true },
);
