import { MemoryEventStore } from "../../runtime/persistence/memory-store.ts";
import { describeEventStoreContract } from "./event-store-contract.ts";

describeEventStoreContract(
  "MemoryEventStore",
  async () => {
    const store = new MemoryEventStore();
    return { store, cleanup: () => store.close() };
  },
  { durable: false },
);
