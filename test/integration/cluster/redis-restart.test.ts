/**
 * Redis (membership and leases) restarted under a running cluster, losing all its data: every
 * node loses its leases at their local deadline and stops writing; when Redis is back the nodes
 * rejoin and re-acquire the shards with new, larger epochs — each shard held by exactly one node,
 * no twin active on two nodes — and writes continue, with every acknowledged report kept once
 * (the scenario: `redis-outage.ts`).
 *
 * Restarts the script's own Redis (`scripts/infra/redis.sh down/up`).
 */
import { redisDown, redisUp } from "./harness.ts";
import { describeRedisOutage } from "./redis-outage.ts";

describeRedisOutage({
  suite: "Redis restarted under a running cluster",
  test: "recovers ownership with new, larger epochs, never runs a twin on two nodes, and keeps writing",
  prefix: "redis",
  members: ["r1", "r2", "r3"],
  what: "Redis down",
  cut: redisDown,
  restore: redisUp,
});
