/**
 * Membership in Redis. Keys, under the prefix `doppel:<cluster>:`:
 *
 * | key | type | what |
 * |---|---|---|
 * | `shards` | string | the cluster's shard count S, set once by the first node (`SET NX`) |
 * | `node:<id>` | hash | `incarnation`, `startedAt`, `meta` (JSON); expires `deadAfterMs` after the last heartbeat (`PEXPIRE`) |
 * | `heartbeats` | sorted set | node id → time of its last heartbeat, ms by Redis `TIME` |
 *
 * A heartbeat is one Lua script: it refreshes the node's record and score, re-sets S if Redis lost
 * it, prunes dead entries and returns the live members — one round trip per beat. Times come from
 * Redis, so node clocks may disagree freely. Single Redis (or a Sentinel pair): the scripts read
 * member keys they do not declare, which Redis Cluster would refuse.
 */

import { HeartbeatMembership, type MembershipOptions } from "./heartbeat-membership.ts";
import type { JsonRecord } from "./membership.ts";
import { LuaScript, RedisCommandError, type RedisConnection } from "./redis-connection.ts";
import type { BeatResult, MemberRecord, MembershipRegistry, MembersRead, StoredMember } from "./registry.ts";

/** The key prefix of cluster `cluster`: `doppel:<cluster>:`. */
export function clusterPrefix(cluster: string): string {
  return `doppel:${cluster}:`;
}

const CLAIM_SHARDS = new LuaScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`);

// Lists live members after pruning dead ones. Expects \`now\` (ms) and the key prefix in scope.
const LIST = `
local cutoff = string.format('%.0f', now - tonumber(ARGV[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cutoff, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #entries, 2 do
  local rec = redis.call('HMGET', ARGV[1] .. 'node:' .. entries[i], 'startedAt', 'meta')
  if rec[1] then
    table.insert(out, entries[i])
    table.insert(out, entries[i + 1])
    table.insert(out, rec[1])
    table.insert(out, rec[2])
  end
end
`;

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS: node record, heartbeats, shards. ARGV: prefix, deadAfterMs, nodeId, incarnation, startedAt,
// meta, join ('1'/'0'), shard count. Reply: {'conflict', ageMs|''} or {'ok', now, S, id, score, startedAt, meta, ...}.
const BEAT = new LuaScript(`${NOW}
if ARGV[7] == '1' then
  local incarnation = redis.call('HGET', KEYS[1], 'incarnation')
  if incarnation and incarnation ~= ARGV[4] then
    local last = redis.call('ZSCORE', KEYS[2], ARGV[3])
    return {'conflict', last and string.format('%.0f', now - tonumber(last)) or ''}
  end
end
redis.call('HSET', KEYS[1], 'incarnation', ARGV[4], 'startedAt', ARGV[5], 'meta', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now), ARGV[3])
redis.call('SET', KEYS[3], ARGV[8], 'NX')
local shards = redis.call('GET', KEYS[3])
${LIST}
return {'ok', string.format('%.0f', now), shards, unpack(out)}
`);

// KEYS: (unused), heartbeats. ARGV: prefix, deadAfterMs. Reply: {'ok', now, '', id, score, startedAt, meta, ...}.
const READ = new LuaScript(`${NOW}
${LIST}
return {'ok', string.format('%.0f', now), '', unpack(out)}
`);

// KEYS: node record, heartbeats. ARGV: nodeId, incarnation.
const REMOVE = new LuaScript(`
if redis.call('HGET', KEYS[1], 'incarnation') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
`);

/** The membership store of one cluster in Redis. Every method rejects with `RedisCommandError` when Redis fails. */
export class RedisMembershipRegistry implements MembershipRegistry {
  readonly #redis: RedisConnection;
  readonly #prefix: string;

  constructor(redis: RedisConnection, cluster: string) {
    this.#redis = redis;
    this.#prefix = clusterPrefix(cluster);
  }

  async claimShardCount(shardCount: number): Promise<number> {
    const stored = await this.#redis.run(CLAIM_SHARDS, [this.#key("shards")], [String(shardCount)]);
    return Number(stored);
  }

  async beat(
    record: MemberRecord,
    options: { readonly join: boolean; readonly deadAfterMs: number; readonly shardCount: number },
  ): Promise<BeatResult> {
    const reply = await this.#redis.run(
      BEAT,
      [this.#key(`node:${record.nodeId}`), this.#key("heartbeats"), this.#key("shards")],
      [
        this.#prefix,
        String(Math.ceil(options.deadAfterMs)),
        record.nodeId,
        record.incarnation,
        String(record.startedAt),
        JSON.stringify(record.meta),
        options.join ? "1" : "0",
        String(options.shardCount),
      ],
    );
    const fields = strings(reply);
    if (fields[0] === "conflict") {
      return { kind: "conflict", ageMs: fields[1] ? Number(fields[1]) : undefined };
    }
    return { kind: "ok", ...parseList(fields) };
  }

  async read(deadAfterMs: number): Promise<MembersRead> {
    const reply = await this.#redis.run(
      READ,
      [this.#key("node:"), this.#key("heartbeats")],
      [this.#prefix, String(Math.ceil(deadAfterMs))],
    );
    return parseList(strings(reply));
  }

  async remove(nodeId: string, incarnation: string): Promise<void> {
    await this.#redis.run(
      REMOVE,
      [this.#key(`node:${nodeId}`), this.#key("heartbeats")],
      [nodeId, incarnation],
    );
  }

  #key(suffix: string): string {
    return this.#prefix + suffix;
  }
}

/** Options of {@link RedisMembership}: the shared ones plus the connection to use (not closed by it). */
export interface RedisMembershipOptions extends MembershipOptions {
  readonly redis: RedisConnection;
}

/**
 * Membership of one node in a cluster whose store is Redis. Heartbeats every `heartbeatMs`
 * (default 500) and polls the members in the same round trip; a node silent for `deadAfterMs`
 * (default 2000) disappears from every view. Fails as {@link HeartbeatMembership} does, with
 * `RedisCommandError` for Redis failures.
 */
export class RedisMembership extends HeartbeatMembership {
  constructor(options: RedisMembershipOptions) {
    super(new RedisMembershipRegistry(options.redis, options.cluster), options);
  }
}

function strings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw new RedisCommandError(`unexpected membership reply ${String(reply)}`);
  return reply.map((v: unknown) => (typeof v === "string" ? v : v === null ? "" : String(v)));
}

function parseList(fields: readonly string[]): MembersRead {
  const now = Number(fields[1]);
  const shardCount = fields[2] ? Number(fields[2]) : undefined;
  const members: StoredMember[] = [];
  for (let i = 3; i + 3 < fields.length; i += 4) {
    const lastHeartbeat = Number(fields[i + 1]);
    members.push({
      nodeId: fields[i]!,
      lastHeartbeat,
      startedAt: Number(fields[i + 2]),
      meta: parseMeta(fields[i + 3]!),
      ageMs: Math.max(0, now - lastHeartbeat),
    });
  }
  return shardCount === undefined ? { members } : { members, shardCount };
}

function parseMeta(text: string): JsonRecord {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as JsonRecord;
  } catch {
    // a record written by something else: show no metadata rather than fail the whole read
  }
  return {};
}
