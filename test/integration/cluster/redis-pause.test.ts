/**
 * Redis (membership and leases) paused under a running cluster (SIGSTOP: its connections stay
 * open and nothing is answered), then resumed. Every node's Redis commands fail by their own
 * deadline instead of waiting on the silent server (before the connection kept its own deadline,
 * `doppel cluster` waited until its gRPC deadline and this test failed), so each node drops its
 * leases at their local deadline and operators asking are told the cluster store is unreachable;
 * once Redis answers again the nodes re-acquire the shards with new, larger epochs and writes
 * continue, every acknowledged report kept once (the scenario: `redis-outage.ts`).
 *
 * Pauses the script's own Redis.
 */
import { redisPause, redisResume } from "./harness.ts";
import { describeRedisOutage } from "./redis-outage.ts";

describeRedisOutage({
  suite: "Redis paused under a running cluster",
  test: "gives up every lease while Redis is silent, answers operators with UNAVAILABLE, and recovers with larger epochs when it answers again",
  prefix: "redis-pause",
  members: ["q1", "q2", "q3"],
  what: "Redis paused",
  cut: redisPause,
  restore: redisResume,
});
