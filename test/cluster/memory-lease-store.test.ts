import { expect, it } from "vitest";
import { LeaseStoreUnavailable, MemoryLeaseStore } from "../../cluster/leases/memory.ts";
import { FakeClock } from "./fake-clock.ts";
import { acquireOne, describeLeaseStoreContract } from "./lease-store-contract.ts";

describeLeaseStoreContract("MemoryLeaseStore", async () => {
  const clock = new FakeClock();
  return {
    store: new MemoryLeaseStore(clock),
    ttlMs: 1000,
    elapse: (ms) => clock.advance(ms),
    cleanup: async () => {},
  };
});

it("memory lease store: fails every call while unavailable, and keeps epochs growing across a flush", async () => {
  const clock = new FakeClock();
  const store = new MemoryLeaseStore(clock);
  const first = await acquireOne(store, 0, "a", 1000);
  store.available = false;
  await expect(store.renew("a", [{ shard: 0, epoch: first!.epoch }], 1000)).rejects.toBeInstanceOf(
    LeaseStoreUnavailable,
  );
  await expect(store.holders()).rejects.toBeInstanceOf(LeaseStoreUnavailable);
  store.available = true;
  store.flush();
  expect(await store.holder(0)).toBeUndefined();
  expect((await acquireOne(store, 0, "b", 1000))!.epoch).toBeGreaterThan(first!.epoch);
});
