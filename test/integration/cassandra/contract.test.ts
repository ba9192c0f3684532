import { beforeAll } from "vitest";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { describeEventStoreContract } from "../../persistence/event-store-contract.ts";
import { ensureCassandra, openStore } from "./harness.ts";

beforeAll(ensureCassandra);

describeEventStoreContract("CassandraEventStore", async () => {
  let current: CassandraEventStore = await openStore("doppel_it_contract");
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await openStore("doppel_it_contract");
      return current;
    },
    cleanup: () => current.close(),
  };
});
