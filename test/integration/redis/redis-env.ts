/**
 * Shared set-up of the Redis integration tests: the server address (DOPPEL_REDIS, or the one
 * `scripts/infra/redis.sh` starts), connections, unique cluster names, and a restart of the
 * script's own Redis for the tests that need one.
 */

import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  RedisConnection,
  type RedisConnectionOptions,
} from "../../../cluster/membership/redis-connection.ts";

/** The Redis that `scripts/infra/redis.sh` runs. */
export const SCRIPT_REDIS = "redis://127.0.0.1:16379";

/** The Redis under test. */
export const REDIS_URL = process.env["DOPPEL_REDIS"] || SCRIPT_REDIS;

/** Why this run may not restart Redis, or undefined when it may (it is the script's own server). */
export const noRestartReason: string | undefined =
  REDIS_URL === SCRIPT_REDIS
    ? undefined
    : `DOPPEL_REDIS=${REDIS_URL} is not the server scripts/infra/redis.sh runs (${SCRIPT_REDIS}): not restarting someone else's Redis`;

/** A cluster name no other test (or earlier run) uses. */
export function uniqueCluster(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/**
 * Loses all the data of `cluster`, as a Redis restart without persistence does: `FLUSHALL` on the
 * script's own server; on someone else's (DOPPEL_REDIS), only this cluster's keys are deleted.
 */
export async function loseData(redis: RedisConnection, cluster: string): Promise<void> {
  if (noRestartReason === undefined) {
    await redis.command(["FLUSHALL"]);
    return;
  }
  let cursor = "0";
  do {
    const reply = (await redis.command([
      "SCAN",
      cursor,
      "MATCH",
      `doppel:${cluster}:*`,
      "COUNT",
      "1000",
    ])) as [string, string[]];
    cursor = reply[0];
    if (reply[1].length > 0) await redis.command(["DEL", ...reply[1]]);
  } while (cursor !== "0");
}

/** A new connection; the caller closes it. */
export function connect(options: RedisConnectionOptions = {}): Promise<RedisConnection> {
  return RedisConnection.connect(REDIS_URL, options);
}

const run = promisify(execFile);
const script = fileURLToPath(new URL("../../../scripts/infra/redis.sh", import.meta.url));

/** Stops the script's Redis (all data is lost: it runs without persistence). */
export async function redisDown(): Promise<void> {
  await run("bash", [script, "down"], { env: { ...process.env, DOPPEL_REDIS: SCRIPT_REDIS } });
}

/** Starts the script's Redis again and waits until it answers. */
export async function redisUp(): Promise<void> {
  await run("bash", [script, "up"], { env: { ...process.env, DOPPEL_REDIS: SCRIPT_REDIS } });
}

const pidFile = fileURLToPath(new URL("../../../.infra/redis/redis.pid", import.meta.url));

/** Pauses the script's Redis (SIGSTOP): its connections stay open, nothing is answered. */
export async function redisPause(): Promise<void> {
  process.kill(await redisPid(), "SIGSTOP");
}

/** Resumes the script's Redis after {@link redisPause}: it answers what it was sent meanwhile. */
export async function redisResume(): Promise<void> {
  process.kill(await redisPid(), "SIGCONT");
}

async function redisPid(): Promise<number> {
  const pid = Number((await readFile(pidFile, "utf8")).trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no Redis pid in ${pidFile}`);
  return pid;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}
