/**
 * RedisConnection's command deadline against the real Redis, seen through a relay in a worker
 * thread that counts what it passes on (and can hold Redis's answers back), so a test can hold
 * this thread's event loop (as a starved CPU or a long GC does) until an answer is certainly
 * waiting in the socket, with no sleep.
 *
 * The last case failed before the connection kept its own deadline: node-redis's timeout ends
 * when a command is written, so a command Redis never answered waited for ever. The first two
 * hold the deadline to what the cluster needs from it: a slow node is not a dead Redis.
 */
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import {
  LuaScript,
  RedisCommandError,
  RedisConnection,
} from "../../../cluster/membership/redis-connection.ts";
import { present } from "../../../runtime/core/present.ts";
import { REDIS_URL } from "./redis-env.ts";

/** Cells of the relay's shared counters. */
const REQUESTS = 0; // chunks passed from the client to Redis
const ANSWERS = 1; // chunks passed from Redis to the client (counted once written to the client's socket)
const HOLD = 2; // 1: keep Redis's answers until it is 0 again

const RELAY = `
const net = require("node:net");
const { parentPort, workerData } = require("node:worker_threads");
const cells = new Int32Array(workerData.shared);
const server = net.createServer((client) => {
  const redis = net.connect(workerData.port, workerData.host);
  const held = [];
  const pass = (chunk) => client.write(chunk, () => { Atomics.add(cells, ${ANSWERS}, 1); Atomics.notify(cells, ${ANSWERS}); });
  const flush = setInterval(() => { if (Atomics.load(cells, ${HOLD}) === 0) while (held.length) pass(held.shift()); }, 2);
  client.on("data", (chunk) => redis.write(chunk, () => { Atomics.add(cells, ${REQUESTS}, 1); Atomics.notify(cells, ${REQUESTS}); }));
  redis.on("data", (chunk) => { if (Atomics.load(cells, ${HOLD}) === 1 || held.length) held.push(chunk); else pass(chunk); });
  const end = () => { clearInterval(flush); client.destroy(); redis.destroy(); };
  client.on("close", end); redis.on("close", end); client.on("error", end); redis.on("error", end);
});
server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port));
parentPort.on("message", () => server.close(() => process.exit(0)));
`;

interface Relay {
  readonly url: string;
  readonly cells: Int32Array;
  stop(): Promise<void>;
}

async function startRelay(): Promise<Relay> {
  const target = new URL(REDIS_URL);
  const shared = new SharedArrayBuffer(4 * 3);
  const worker = new Worker(RELAY, {
    eval: true,
    workerData: { shared, host: target.hostname, port: Number(target.port || 6379) },
  });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    cells: new Int32Array(shared),
    stop: async () => {
      worker.postMessage("stop");
      await new Promise((resolve) => worker.once("exit", resolve));
    },
  };
}

/** Blocks this thread until `cells[cell]` is no longer `was` (the relay passed a chunk on). */
function blockUntilChanged(cells: Int32Array, cell: number, was: number): void {
  const outcome = Atomics.wait(cells, cell, was, 30_000);
  if (outcome === "timed-out") throw new Error(`the relay passed nothing on within 30 s (cell ${cell})`);
}

/** Blocks this thread (timers, sockets and all) until `ms` of monotonic time have passed since `since`. */
function blockUntil(since: number, ms: number): void {
  const idle = new Int32Array(new SharedArrayBuffer(4));
  for (let left = since + ms - performance.now(); left > 0; left = since + ms - performance.now()) {
    Atomics.wait(idle, 0, 0, left);
  }
}

/** What the cluster layer sends: a Lua script by SHA (here one that answers its argument). */
const ECHO = new LuaScript("return ARGV[1]");
const echo = (redis: RedisConnection, text: string) => redis.run(ECHO, [], [text]);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("RedisConnection", () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const thing of open.reverse()) await thing.close();
    open.length = 0;
  });

  async function relayed(
    timeoutMs: number,
    maxUnanswered?: number,
  ): Promise<{ relay: Relay; redis: RedisConnection }> {
    const relay = await startRelay();
    open.push({ close: () => relay.stop() });
    const connection = await RedisConnection.connect(relay.url, {
      commandTimeoutMs: timeoutMs,
      ...present({ maxUnanswered }),
    });
    open.push(connection);
    expect(await connection.command(["PING"])).toBe("PONG"); // connected, hand-shake done
    return { relay, redis: connection };
  }

  it("answers a command queued while the event loop was held up past the timeout (its clock starts at the write)", async () => {
    const timeoutMs = 200;
    const { redis } = await relayed(timeoutMs);
    const queued = performance.now();
    const answer = echo(redis, "queued");
    blockUntil(queued, timeoutMs + 100); // before node-redis could write it
    expect(await answer).toBe("queued");
  });

  it("answers a command whose answer waited in the socket while the event loop was held up past the timeout", async () => {
    const timeoutMs = 300;
    const { relay, redis } = await relayed(timeoutMs);
    // Held up from before the answer can arrive until after the timeout was due: timers run
    // before sockets are read, so a plain timer would fail the command here.
    for (let attempt = 0; ; attempt++) {
      const requests = Atomics.load(relay.cells, REQUESTS);
      const answers = Atomics.load(relay.cells, ANSWERS);
      const sent = performance.now();
      const answer = echo(redis, `held up ${attempt}`);
      await turn(); // node-redis writes its queue on the next turn
      await turn();
      if (performance.now() - sent >= timeoutMs / 2) {
        // This thread was descheduled before it could hold itself up: not the case under test.
        await answer.catch(() => undefined);
        if (attempt < 5) continue;
        throw new Error("could not hold the event loop up before the timeout, 6 times");
      }
      blockUntilChanged(relay.cells, REQUESTS, requests); // the command reached Redis
      blockUntilChanged(relay.cells, ANSWERS, answers); // its answer is in this process's socket
      blockUntil(performance.now(), timeoutMs + 100); // and the timeout is overdue
      expect(await answer).toBe(`held up ${attempt}`);
      break;
    }
    // The connection goes on as before.
    expect(await echo(redis, "after")).toBe("after");
  });

  it("fails a command Redis does not answer in time with a precise error; its late answer is dropped and the next command gets its own", async () => {
    const { relay, redis } = await relayed(200);
    Atomics.store(relay.cells, HOLD, 1);
    const failure = await echo(redis, "late").then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(RedisCommandError);
    expect((failure as Error).message).toMatch(/no answer within 200 ms/);
    const answers = Atomics.load(relay.cells, ANSWERS);
    Atomics.store(relay.cells, HOLD, 0); // the late answer arrives now
    while (Atomics.load(relay.cells, ANSWERS) === answers) await turn();
    expect(await echo(redis, "next")).toBe("next");
  });

  it("holds at most maxUnanswered commands for a Redis that stays connected but does not answer; sends again once it answers", async () => {
    const { relay, redis } = await relayed(100, 3);
    Atomics.store(relay.cells, HOLD, 1); // a paused Redis: connected, silent
    const answers = Atomics.load(relay.cells, ANSWERS);
    const timedOut = await Promise.all(
      [1, 2, 3].map((i) => echo(redis, `held ${i}`).catch((e: Error) => e.message)),
    );
    expect(timedOut).toEqual(Array(3).fill(expect.stringMatching(/no answer within 100 ms/)));
    // The three are still queued in the client, waiting for their answers: a fourth is not sent.
    await expect(echo(redis, "one too many")).rejects.toThrow(
      /3 commands unanswered \(maxUnanswered\); not sent/,
    );
    Atomics.store(relay.cells, HOLD, 0); // Redis answers again: the three late answers arrive, and are dropped
    // Refused without being sent until the late answers are in; then sent and answered.
    for (;;) {
      const outcome = await echo(redis, "again").catch((e: Error) => e);
      if (outcome === "again") break;
      expect((outcome as Error).message).toMatch(/commands unanswered/);
      await turn();
    }
    expect(Atomics.load(relay.cells, ANSWERS)).toBeGreaterThan(answers);
  });
});
