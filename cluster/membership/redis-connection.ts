/**
 * One connection to Redis (node-redis v5) set up the way the cluster layer needs it: commands fail
 * fast while disconnected (no offline queue: a lease renewal queued during an outage and run much
 * later would be worse than useless), every command has a timeout, reconnection is automatic and
 * quick, and Lua scripts run by SHA with a fallback to the source after Redis lost its script cache.
 * Shared by membership and leases (`cluster/leases` imports it from here).
 *
 * **Timeouts are the connection's own.** node-redis's command timeout only covers the wait to be
 * written. A command written and never answered (a paused Redis) waited until Redis answered at
 * last, holding that shard's renewal or the heartbeat. A command kept in its write queue longer
 * than the timeout (behind a socket waiting to drain, or an event loop held up) failed, although
 * Redis was fine: beside busy loops in `bench:cluster`, a node's lease commands failed one after
 * the other that way. Here each command's clock starts at its write (the client's write turn,
 * which runs right before; its first attempt when the socket must drain first). When the clock
 * runs out, the command fails only if it is still unanswered after the sockets were read once
 * more, so an answer that arrived while the event loop was held up is taken. At most
 * `maxUnanswered` commands are unanswered at once.
 */

import { createHash } from "node:crypto";
import { createClient } from "redis";

/** Default of {@link RedisConnectionOptions.commandTimeoutMs}. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 1000;
/** Default of {@link RedisConnectionOptions.maxUnanswered}. */
export const DEFAULT_MAX_UNANSWERED = 1024;

/** A Lua script and its SHA-1 (what `EVALSHA` names it by). */
export class LuaScript {
  readonly sha1: string;
  constructor(readonly source: string) {
    this.sha1 = createHash("sha1").update(source).digest("hex");
  }
}

/** A Redis command failed: the server is unreachable, timed out, or answered with an error. */
export class RedisCommandError extends Error {
  readonly code = "REDIS_UNAVAILABLE";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisCommandError";
  }
}

/** Options of {@link RedisConnection.connect}. */
export interface RedisConnectionOptions {
  /** A command still unanswered this long after it was written fails, ms (default 1000; see above). */
  readonly commandTimeoutMs?: number;
  /** Longest wait between reconnection attempts, ms (default 500; attempts back off from 50 ms). */
  readonly maxReconnectDelayMs?: number;
  /** Connection attempt timeout, ms (default 2000). */
  readonly connectTimeoutMs?: number;
  /**
   * Most commands sent and not yet answered, timed out ones included (a timed-out command stays
   * queued in the client until Redis answers it or the connection drops); beyond it commands fail
   * at once without being sent. Bounds what a Redis that stays connected but never answers (a
   * paused one) makes this process hold. Default 1024.
   */
  readonly maxUnanswered?: number;
  /** Told of connection errors (the client keeps reconnecting). Default: ignored. */
  readonly onError?: (error: unknown) => void;
  /** Connect over TLS (also implied by a `rediss://` URL): PEM contents of the CA and a client certificate. */
  readonly tls?: RedisTls;
}

/** TLS material for a Redis connection (PEM contents, not paths). */
export interface RedisTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** Name to check the server's certificate against (default: the URL's host). */
  readonly serverName?: string;
}

type Client = ReturnType<typeof createClient>;

/** A connected Redis client. Close it with {@link close}; until then it reconnects by itself. */
export class RedisConnection {
  readonly url: string;
  readonly #client: Client;
  readonly #timeoutMs: number;
  readonly #maxUnanswered: number;
  /** Commands sent whose answer (or the connection's loss) has not come yet. */
  #unanswered = 0;

  private constructor(url: string, client: Client, timeoutMs: number, maxUnanswered: number) {
    this.url = url;
    this.#client = client;
    this.#timeoutMs = timeoutMs;
    this.#maxUnanswered = maxUnanswered;
  }

  /**
   * Connects to `url` (`redis://host:port[/db]`). Rejects with {@link RedisCommandError} when the
   * first connection cannot be made within `connectTimeoutMs`; later disconnections are retried.
   */
  static async connect(url: string, options: RedisConnectionOptions = {}): Promise<RedisConnection> {
    const maxDelay = options.maxReconnectDelayMs ?? 500;
    let connected = false;
    // node-redis takes TLS from the scheme: TLS material given with a redis:// URL means rediss://.
    const clientUrl =
      options.tls !== undefined && url.startsWith("redis://") ? `rediss://${url.slice(8)}` : url;
    const timeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new RangeError(`commandTimeoutMs must be positive, got ${timeoutMs}`);
    const maxUnanswered = options.maxUnanswered ?? DEFAULT_MAX_UNANSWERED;
    if (!(Number.isInteger(maxUnanswered) && maxUnanswered > 0)) {
      throw new RangeError(`maxUnanswered must be a positive integer, got ${maxUnanswered}`);
    }
    const client = createClient({
      url: clientUrl,
      disableOfflineQueue: true,
      // No node-redis command timeout: each command gets this connection's own (see above).
      socket: {
        ...tlsSocket(url, options.tls),
        connectTimeout: options.connectTimeoutMs ?? 2000,
        // Before the first connection succeeds, give up (connect() rejects); after, retry forever.
        reconnectStrategy: (retries) => (connected ? Math.min(50 * 2 ** retries, maxDelay) : false),
      },
    });
    const onError = options.onError ?? (() => {});
    client.on("error", (error: unknown) => onError(error));
    try {
      await client.connect();
    } catch (error) {
      if (client.isOpen) client.destroy();
      throw new RedisCommandError(`cannot connect to Redis at ${url}: ${describe(error)}`, { cause: error });
    }
    connected = true;
    return new RedisConnection(url, client, timeoutMs, maxUnanswered);
  }

  /** True while the socket is connected and ready. */
  get ready(): boolean {
    return this.#client.isReady;
  }

  /**
   * Runs `script` atomically with `keys` and `args`; resolves with its raw reply. Rejects with
   * {@link RedisCommandError} when Redis is unreachable, too slow, or the script fails.
   */
  run(script: LuaScript, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const options = { keys: [...keys], arguments: [...args] };
    return this.#withDeadline(async (abortSignal) => {
      const client = this.#client.withAbortSignal(abortSignal);
      try {
        return await client.evalSha(script.sha1, options);
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) throw error;
        return await client.eval(script.source, options); // Redis restarted: load it again
      }
    });
  }

  /** Runs a plain command (e.g. `["FLUSHALL"]` in tests); fails like {@link run}. */
  command(args: readonly string[]): Promise<unknown> {
    return this.#withDeadline((abortSignal) => this.#client.sendCommand([...args], { abortSignal }));
  }

  /**
   * Runs `send`, failing with {@link RedisCommandError} when it fails, or when it is unanswered
   * `commandTimeoutMs` after its command was written and the sockets were read once more (its
   * command is then aborted: taken out of the queue if it was not written after all; an answer
   * coming later is dropped).
   */
  #withDeadline<T>(send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#unanswered >= this.#maxUnanswered) {
      return Promise.reject(
        new RedisCommandError(
          `Redis at ${this.url}: ${this.#unanswered} commands unanswered (maxUnanswered); not sent`,
        ),
      );
    }
    this.#unanswered++;
    return new Promise<T>((resolve, reject) => {
      const abort = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      /** Settles the caller's promise once: by the answer, the failure or the deadline, whichever is first. */
      const finish = (settle: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        settle();
      };
      send(abort.signal)
        .finally(() => this.#unanswered--)
        .then(
          (value) => finish(() => resolve(value)),
          (error: unknown) =>
            finish(() =>
              reject(new RedisCommandError(`Redis at ${this.url}: ${describe(error)}`, { cause: error })),
            ),
        );
      const expire = () =>
        finish(() => {
          abort.abort();
          reject(new RedisCommandError(`Redis at ${this.url}: no answer within ${this.#timeoutMs} ms`));
        });
      // node-redis writes its queue in an immediate that `send` scheduled: this one runs right
      // after it, so the clock starts at the write (or its first attempt, if the socket must
      // drain). When the timer is due, `setImmediate` judges after the next poll, which reads an
      // answer that arrived while the loop was held up.
      setImmediate(() => {
        if (!settled) timer = setTimeout(() => setImmediate(expire), this.#timeoutMs);
      });
    });
  }

  /** Closes the connection (pending commands are answered first when Redis is reachable). Never fails. */
  async close(): Promise<void> {
    try {
      if (this.#client.isOpen) await this.#client.close();
    } catch {
      this.#client.destroy();
    }
  }
}

/** The socket's TLS settings: on for `rediss://` or when TLS material is given. */
function tlsSocket(
  url: string,
  tls: RedisTls | undefined,
): { tls: true; ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } | { tls?: never } {
  if (tls === undefined && !url.startsWith("rediss://")) return {};
  return {
    tls: true,
    ...(tls?.ca ? { ca: tls.ca } : {}),
    ...(tls?.cert ? { cert: tls.cert } : {}),
    ...(tls?.key ? { key: tls.key } : {}),
    ...(tls?.serverName ? { servername: tls.serverName } : {}),
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
