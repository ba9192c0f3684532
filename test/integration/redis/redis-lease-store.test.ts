import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisLeaseStore } from "../../../cluster/leases/redis.ts";
import type { RedisConnection } from "../../../cluster/membership/redis-connection.ts";
import { acquireOne, describeLeaseStoreContract } from "../../cluster/lease-store-contract.ts";
import { connect, loseData, noRestartReason, redisDown, redisUp, sleep, uniqueCluster } from "./redis-env.ts";

describeLeaseStoreContract("RedisLeaseStore", async () => {
  const redis = await connect();
  return {
    store: new RedisLeaseStore(redis, uniqueCluster("leases")),
    ttlMs: 300,
    elapse: sleep,
    cleanup: () => redis.close(),
  };
});

describe("RedisLeaseStore when Redis loses its data", () => {
  let redis: RedisConnection;
  beforeAll(async () => {
    redis = await connect();
  });
  afterAll(async () => {
    await redis.close();
  });

  it("grows epochs across a FLUSHALL (lost data), even for a shard re-acquired within the same millisecond", async () => {
    const cluster = uniqueCluster("flush");
    const store = new RedisLeaseStore(redis, cluster);
    let last = 0;
    for (let round = 0; round < 20; round++) {
      // Several grants back to back, then the data is gone at once: the counter may run ahead of
      // the clock by a few, never by the time the next grant takes.
      for (let i = 0; i < 3; i++) {
        const node = `n${i}`;
        const { epoch } = (await acquireOne(store, 0, node, 5000))!;
        expect(epoch).toBeGreaterThan(last);
        last = epoch;
        await store.release(0, node, epoch);
      }
      await acquireOne(store, 0, "holder", 5000);
      await loseData(redis, cluster);
      expect(await store.holder(0)).toBeUndefined(); // the lease was lost with the data
      const { epoch } = (await acquireOne(store, 0, "next", 5000))!;
      expect(epoch).toBeGreaterThan(last);
      last = epoch;
      await loseData(redis, cluster);
    }
  });

  it.skipIf(noRestartReason !== undefined)(
    "grows epochs across a real Redis restart, and fails calls while Redis is down",
    async () => {
      const restartRedis = await connect();
      const store = new RedisLeaseStore(restartRedis, uniqueCluster("restart"));
      try {
        const before = (await acquireOne(store, 3, "a", 60_000))!.epoch;
        await redisDown();
        await expect(acquireOne(store, 3, "a", 1000)).rejects.toThrow(/Redis/);
        await redisUp();
        let after: number | undefined;
        for (let i = 0; i < 100 && after === undefined; i++) {
          after = await acquireOne(store, 3, "b", 1000).then(
            (grant) => grant?.epoch,
            async () => sleep(50).then(() => undefined), // still reconnecting
          );
        }
        expect(after).toBeGreaterThan(before);
      } finally {
        await restartRedis.close();
      }
    },
    30_000,
  );
  if (noRestartReason !== undefined) console.log(`skipping the Redis restart test: ${noRestartReason}`);
});
