/**
 * Shard leases in Redis, one Lua script per operation (atomic). Keys, under `doppel:<cluster>:`:
 *
 * | key | type | what |
 * |---|---|---|
 * | `lease:<shard>` | hash | `node`, `epoch`; expires with the lease (`PEXPIRE ttl`) |
 * | `epoch:<shard>` | string | the last epoch granted for the shard (never expires) |
 * | `leases` | set | shards that may have a lease (index for `holders()`; pruned lazily) |
 *
 * **Epochs only grow, even when Redis loses its data** (the test Redis runs without persistence):
 * a new epoch is `max(INCR epoch:<shard>, Redis TIME in microseconds)`. After a restart that lost
 * the counter, the clock term is larger than any epoch granted before, *provided Redis's wall clock
 * has not gone back by more than the downtime* (NTP slews; a failover to a replica whose clock lags
 * by more than the failover time would break it). Microseconds, not milliseconds, so that even a
 * shard re-acquired several times within one millisecond right before a crash is covered: the
 * counter can only run ahead of the clock by one per grant within the same microsecond. Epochs are
 * below 2^53 until the year 2255, so they are exact JavaScript numbers.
 */

import { clusterPrefix } from "../membership/redis.ts";
import { LuaScript, RedisCommandError, type RedisConnection } from "../membership/redis-connection.ts";
import {
  checkLeaseArgs,
  checkShardList,
  type HeldLease,
  type LeaseGrant,
  type LeaseHolder,
  type LeaseStore,
} from "./lease-store.ts";

// KEYS: the index, then per shard its lease and its epoch counter. ARGV: node, ttlMs, then the
// shards. Reply: per shard its new epoch, or 0 when another node holds it.
const ACQUIRE = new LuaScript(`
local t = redis.call('TIME')
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #ARGV - 2 do
  local lease, counter = KEYS[2 * i], KEYS[2 * i + 1]
  local holder = redis.call('HGET', lease, 'node')
  if holder and holder ~= ARGV[1] then
    out[i] = 0
  else
    local epoch = redis.call('INCR', counter)
    if micros > epoch then epoch = micros end
    local e = string.format('%.0f', epoch)
    redis.call('SET', counter, e)
    redis.call('DEL', lease)
    redis.call('HSET', lease, 'node', ARGV[1], 'epoch', e)
    redis.call('PEXPIRE', lease, ARGV[2])
    redis.call('SADD', KEYS[1], ARGV[i + 2])
    out[i] = e
  end
end
return out
`);

// KEYS: leases. ARGV: node, ttlMs, then the epoch of each key. Reply: per key 1 renewed, 0 not held.
const RENEW = new LuaScript(`
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'node', 'epoch')
  if v[1] == ARGV[1] and v[2] == ARGV[i + 2] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`);

/**
 * Most leases one acquisition or renewal script handles: a node's acquisitions and renewals go in
 * as few round trips as this allows, while one script (which blocks Redis while it runs) stays
 * around a millisecond.
 */
export const LEASE_BATCH = 512;

// KEYS: lease, index. ARGV: node, epoch, shard. Reply: 1 released, 0 not held.
const RELEASE = new LuaScript(`
local v = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if v[1] == ARGV[1] and v[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
`);

// KEYS: lease. Reply: {node, epoch, pttl} or nil.
const HOLDER = new LuaScript(`
local v = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if not v[1] then return false end
return {v[1], v[2], tostring(redis.call('PTTL', KEYS[1]))}
`);

// KEYS: index. ARGV: prefix. Reply: {shard, node, epoch, pttl, ...}; prunes shards without a lease.
const HOLDERS = new LuaScript(`
local out = {}
for _, shard in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. 'lease:' .. shard
  local v = redis.call('HMGET', key, 'node', 'epoch')
  if v[1] then
    table.insert(out, shard)
    table.insert(out, v[1])
    table.insert(out, v[2])
    table.insert(out, tostring(redis.call('PTTL', key)))
  else
    redis.call('SREM', KEYS[1], shard)
  end
end
return out
`);

/** The shard leases of cluster `cluster` in Redis. Every method rejects with `RedisCommandError` when Redis fails. */
export class RedisLeaseStore implements LeaseStore {
  readonly #redis: RedisConnection;
  readonly #prefix: string;

  /** Uses `redis` (not closed by the store) for the leases of `cluster`. */
  constructor(redis: RedisConnection, cluster: string) {
    if (cluster.length === 0 || cluster.includes(":")) {
      throw new RangeError(`invalid cluster name "${cluster}": non-empty, without ':'`);
    }
    this.#redis = redis;
    this.#prefix = clusterPrefix(cluster);
  }

  async acquire(node: string, shards: readonly number[], ttlMs: number): Promise<(LeaseGrant | undefined)[]> {
    checkShardList(shards, ttlMs);
    const answers = await this.#inBatches(shards, (batch) => {
      const keys = [`${this.#prefix}leases`];
      for (const shard of batch) keys.push(this.#lease(shard), `${this.#prefix}epoch:${shard}`);
      return this.#redis.run(ACQUIRE, keys, [node, ms(ttlMs), ...batch.map(String)]);
    });
    return answers.map((a) => (a === "0" ? undefined : { epoch: integer(a) }));
  }

  async renew(node: string, leases: readonly HeldLease[], ttlMs: number): Promise<boolean[]> {
    for (const { shard } of leases) checkLeaseArgs(shard, ttlMs);
    const answers = await this.#inBatches(leases, (batch) =>
      this.#redis.run(
        RENEW,
        batch.map((l) => this.#lease(l.shard)),
        [node, ms(ttlMs), ...batch.map((l) => String(l.epoch))],
      ),
    );
    return answers.map((a) => integer(a) === 1);
  }

  async release(shard: number, node: string, epoch: number): Promise<boolean> {
    checkLeaseArgs(shard);
    const reply = await this.#redis.run(
      RELEASE,
      [this.#lease(shard), `${this.#prefix}leases`],
      [node, String(epoch), String(shard)],
    );
    return integer(reply) === 1;
  }

  async holder(shard: number): Promise<LeaseHolder | undefined> {
    checkLeaseArgs(shard);
    const reply = await this.#redis.run(HOLDER, [this.#lease(shard)], []);
    if (reply === null) return undefined;
    const [node, epoch, pttl] = fields(reply, 3);
    return { node: node!, epoch: integer(epoch), expiresInMs: Math.max(0, integer(pttl)) };
  }

  async holders(): Promise<ReadonlyMap<number, LeaseHolder>> {
    const reply = fields(await this.#redis.run(HOLDERS, [`${this.#prefix}leases`], [this.#prefix]), 4);
    const rows: [number, LeaseHolder][] = [];
    for (let i = 0; i + 3 < reply.length; i += 4) {
      rows.push([
        integer(reply[i]),
        {
          node: reply[i + 1]!,
          epoch: integer(reply[i + 2]),
          expiresInMs: Math.max(0, integer(reply[i + 3])),
        },
      ]);
    }
    return new Map(rows.sort((a, b) => a[0] - b[0]));
  }

  /**
   * Runs `run` (one script) on `items` in slices of {@link LEASE_BATCH}, at once; resolves the
   * scripts' answers, one per item, in order. Rejects when a script's reply is not one answer per item.
   */
  async #inBatches<T>(
    items: readonly T[],
    run: (batch: readonly T[]) => Promise<unknown>,
  ): Promise<string[]> {
    const batches: Promise<string[]>[] = [];
    for (let i = 0; i < items.length; i += LEASE_BATCH) {
      const batch = items.slice(i, i + LEASE_BATCH);
      batches.push(
        run(batch).then((reply) => {
          const answers = fields(reply, 1);
          if (answers.length !== batch.length)
            throw new RedisCommandError(`unexpected lease reply ${answers}`);
          return answers;
        }),
      );
    }
    return (await Promise.all(batches)).flat();
  }

  #lease(shard: number): string {
    return `${this.#prefix}lease:${shard}`;
  }
}

function ms(ttlMs: number): string {
  return String(Math.max(1, Math.ceil(ttlMs)));
}

function integer(value: unknown): number {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new RedisCommandError(`unexpected lease reply ${String(value)}`);
  return n;
}

function fields(reply: unknown, multipleOf: number): string[] {
  if (!Array.isArray(reply) || reply.length % multipleOf !== 0) {
    throw new RedisCommandError(`unexpected lease reply ${JSON.stringify(reply)}`);
  }
  return reply.map(String);
}
