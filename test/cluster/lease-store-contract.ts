/**
 * The `LeaseStore` contract: what every implementation (in-memory, Redis) must do. Each
 * implementation's test file calls {@link describeLeaseStoreContract} with a way to open a store
 * for one test (a fresh cluster name each time, so tests never share keys) and a way to let time
 * pass (a fake clock in memory, real time against Redis).
 */

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LeaseGrant, LeaseStore } from "../../cluster/leases/lease-store.ts";

/** One shard acquired on its own. */
export async function acquireOne(
  store: LeaseStore,
  shard: number,
  node: string,
  ttlMs: number,
): Promise<LeaseGrant | undefined> {
  return (await store.acquire(node, [shard], ttlMs))[0];
}

/** What a test file hands the suite for each test. */
export interface LeaseStoreHarness {
  readonly store: LeaseStore;
  /** The TTL the suite uses: long enough to outlast a round trip many times over. */
  readonly ttlMs: number;
  /** Lets `ms` pass on the store's clock. */
  readonly elapse: (ms: number) => Promise<void>;
  readonly cleanup: () => Promise<void>;
}

export function describeLeaseStoreContract(name: string, open: () => Promise<LeaseStoreHarness>): void {
  describe(`${name}: lease store contract`, () => {
    let h: LeaseStoreHarness;
    beforeEach(async () => {
      h = await open();
    });
    afterEach(async () => {
      await h.cleanup();
    });
    /** One lease renewed on its own. */
    const renew = async (shard: number, node: string, epoch: number) =>
      (await h.store.renew(node, [{ shard, epoch }], h.ttlMs))[0];

    it("grants a free shard with an epoch and names the holder", async () => {
      const grant = await acquireOne(h.store, 7, "a", h.ttlMs);
      expect(grant?.epoch).toBeGreaterThan(0);
      const holder = await h.store.holder(7);
      expect(holder).toMatchObject({ node: "a", epoch: grant?.epoch });
      expect(holder?.expiresInMs).toBeGreaterThan(0);
      expect(holder?.expiresInMs).toBeLessThanOrEqual(h.ttlMs);
      expect(await h.store.holder(8)).toBeUndefined();
    });

    it("refuses a shard another node holds, and re-grants its holder a greater epoch", async () => {
      const first = await acquireOne(h.store, 1, "a", h.ttlMs);
      expect(await acquireOne(h.store, 1, "b", h.ttlMs)).toBeUndefined();
      const again = await acquireOne(h.store, 1, "a", h.ttlMs);
      expect(again!.epoch).toBeGreaterThan(first!.epoch);
      // The old epoch is fenced off: it can neither renew nor release.
      expect(await renew(1, "a", first!.epoch)).toBe(false);
      expect(await h.store.release(1, "a", first!.epoch)).toBe(false);
      expect((await h.store.holder(1))?.epoch).toBe(again!.epoch);
    });

    it("renews only the holder's current epoch, extending the lease", async () => {
      const { epoch } = (await acquireOne(h.store, 2, "a", h.ttlMs))!;
      expect(await renew(2, "b", epoch)).toBe(false);
      expect(await renew(2, "a", epoch + 1)).toBe(false);
      await h.elapse(h.ttlMs * 0.6);
      expect(await renew(2, "a", epoch)).toBe(true);
      await h.elapse(h.ttlMs * 0.6); // past the original expiry, within the renewed one
      expect(await h.store.holder(2)).toMatchObject({ node: "a", epoch });
    });

    it("grants many shards in one call, each judged on its own, in order", async () => {
      // More than one Redis script's worth (LEASE_BATCH, 512).
      const shards = Array.from({ length: 600 }, (_, i) => 1000 + i);
      const taken = await acquireOne(h.store, 1010, "b", h.ttlMs);
      const before = await acquireOne(h.store, 1599, "a", h.ttlMs); // a's own: granted again, newer epoch
      const grants = await h.store.acquire("a", shards, h.ttlMs);
      expect(grants).toHaveLength(600);
      expect(grants.flatMap((g, i) => (g ? [] : [shards[i]]))).toEqual([1010]);
      expect(grants[599]!.epoch).toBeGreaterThan(before!.epoch);
      const holders = await h.store.holders();
      expect(holders.get(1010)).toMatchObject({ node: "b", epoch: taken!.epoch });
      shards.forEach((shard, i) => {
        if (shard !== 1010) expect(holders.get(shard)).toMatchObject({ node: "a", epoch: grants[i]!.epoch });
      });
      expect(await h.store.acquire("a", [], h.ttlMs)).toEqual([]);
      await expect(h.store.acquire("a", [1, 2, 1], h.ttlMs)).rejects.toThrow(RangeError);
    });

    it("renews many leases in one call, each judged on its own, in order", async () => {
      // More than one Redis script's worth (LEASE_BATCH, 512), so the batches' answers are joined in order.
      const shards = Array.from({ length: 600 }, (_, i) => 100 + i);
      const grants = await h.store.acquire("a", shards, h.ttlMs);
      const leases = shards.map((shard, i) => ({ shard, epoch: grants[i]!.epoch }));
      // Shard 150 is taken over by b; shard 650 is asked for with an epoch that was never "a"'s.
      await h.store.release(150, "a", leases[50]!.epoch);
      await acquireOne(h.store, 150, "b", h.ttlMs);
      const asked = leases.map((l) => (l.shard === 650 ? { shard: 650, epoch: l.epoch + 1 } : l));
      await h.elapse(h.ttlMs * 0.6);
      const renewed = await h.store.renew("a", asked, h.ttlMs);
      expect(renewed).toHaveLength(600);
      expect(renewed.flatMap((ok, i) => (ok ? [] : [shards[i]]))).toEqual([150, 650]);
      expect((await h.store.holder(150))?.node).toBe("b");
      await h.elapse(h.ttlMs * 0.6); // past the original expiry, within the renewed one
      const holders = await h.store.holders();
      expect(holders.get(100)).toMatchObject({ node: "a", epoch: leases[0]!.epoch });
      expect(holders.get(699)).toMatchObject({ node: "a", epoch: leases[599]!.epoch });
      // Neither b's lease (b never renewed it) nor 650 (the epoch did not match) was extended.
      expect(holders.has(150)).toBe(false);
      expect(holders.has(650)).toBe(false);
      expect(holders.size).toBe(598);
      expect(await h.store.renew("a", [], h.ttlMs)).toEqual([]);
    });

    it("releases only the holder's current epoch; the next holder gets a greater epoch", async () => {
      const { epoch } = (await acquireOne(h.store, 3, "a", h.ttlMs))!;
      expect(await h.store.release(3, "b", epoch)).toBe(false);
      expect(await h.store.release(3, "a", epoch)).toBe(true);
      expect(await h.store.holder(3)).toBeUndefined();
      expect(await h.store.release(3, "a", epoch)).toBe(false);
      const next = await acquireOne(h.store, 3, "b", h.ttlMs);
      expect(next!.epoch).toBeGreaterThan(epoch);
    });

    it("expires a lease that is not renewed within its TTL", async () => {
      const { epoch } = (await acquireOne(h.store, 4, "a", h.ttlMs))!;
      await h.elapse(h.ttlMs + 50);
      expect(await h.store.holder(4)).toBeUndefined();
      expect(await renew(4, "a", epoch)).toBe(false);
      const next = await acquireOne(h.store, 4, "b", h.ttlMs);
      expect(next!.epoch).toBeGreaterThan(epoch);
    });

    it("grows a shard's epoch across every grant", async () => {
      let last = 0;
      for (let i = 0; i < 20; i++) {
        const node = i % 2 === 0 ? "a" : "b";
        const { epoch } = (await acquireOne(h.store, 5, node, h.ttlMs))!;
        expect(epoch).toBeGreaterThan(last);
        last = epoch;
        expect(await h.store.release(5, node, epoch)).toBe(true);
      }
    });

    it("lists every current holder", async () => {
      const a = await acquireOne(h.store, 10, "a", h.ttlMs);
      const b = await acquireOne(h.store, 11, "b", h.ttlMs);
      const c = await acquireOne(h.store, 12, "a", h.ttlMs);
      await h.store.release(12, "a", c!.epoch);
      const all = await h.store.holders();
      expect([...all.keys()]).toEqual([10, 11]);
      expect(all.get(10)).toMatchObject({ node: "a", epoch: a!.epoch });
      expect(all.get(11)).toMatchObject({ node: "b", epoch: b!.epoch });
    });

    it("refuses invalid shards and TTLs", async () => {
      await expect(acquireOne(h.store, -1, "a", h.ttlMs)).rejects.toThrow(RangeError);
      await expect(acquireOne(h.store, 1.5, "a", h.ttlMs)).rejects.toThrow(RangeError);
      await expect(acquireOne(h.store, 1, "a", 0)).rejects.toThrow(RangeError);
      await expect(
        h.store.renew(
          "a",
          [
            { shard: 1, epoch: 1 },
            { shard: -2, epoch: 1 },
          ],
          h.ttlMs,
        ),
      ).rejects.toThrow(RangeError);
    });
  });
}
