/**
 * The engine's {@link ShardOwnership} over cluster shard leases: a shard's events are written
 * with the lease's epoch, and only while the lease is held (checked locally, with no store round
 * trip). A lost lease becomes a safe-to-retry `not-owner` refusal.
 */

import { LeaseLost } from "../../cluster/leases/errors.ts";
import type { ShardLeases } from "../../cluster/leases/shard-leases.ts";
import type { ShardOwnership } from "../core/ownership.ts";
import type { Writer } from "../core/records.ts";
import { notOwner } from "./protocol.ts";

export function leaseOwnership(leases: ShardLeases, nodeId: string): ShardOwnership {
  return {
    writerFor(shard: number): Writer {
      try {
        return leases.writerFor(shard);
      } catch (error) {
        if (error instanceof LeaseLost) throw notOwner(shard, nodeId);
        throw error;
      }
    },
    ownedShards: () => leases.ownedShards(),
  };
}
