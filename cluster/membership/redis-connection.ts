/**
 * One connection to Redis (node-redis v5) set up the way the cluster layer needs it: commands fail
 * fast while disconnected (no offline queue: a lease renewal queued during an outage and run much
 * later would be worse than useless), every command has a timeout, reconnection is automatic and
 * quick, and Lua scripts run by SHA with a fallback to the source after Redis lost its script cache.
 * Shared by membership and leases (`cluster/leases` imports it from here).
 */

import { createHash } from "node:crypto";
import { createClient } from "redis";

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
  /** A command that has not been answered after this long fails, ms (default 1000). */
  readonly commandTimeoutMs?: number;
  /** Longest wait between reconnection attempts, ms (default 500; attempts back off from 50 ms). */
  readonly maxReconnectDelayMs?: number;
  /** Connection attempt timeout, ms (default 2000). */
  readonly connectTimeoutMs?: number;
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

  private constructor(url: string, client: Client) {
    this.url = url;
    this.#client = client;
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
    const client = createClient({
      url: clientUrl,
      disableOfflineQueue: true,
      commandOptions: { timeout: options.commandTimeoutMs ?? 1000 },
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
    return new RedisConnection(url, client);
  }

  /** True while the socket is connected and ready. */
  get ready(): boolean {
    return this.#client.isReady;
  }

  /**
   * Runs `script` atomically with `keys` and `args`; resolves with its raw reply. Rejects with
   * {@link RedisCommandError} when Redis is unreachable, too slow, or the script fails.
   */
  async run(script: LuaScript, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const options = { keys: [...keys], arguments: [...args] };
    try {
      try {
        return await this.#client.evalSha(script.sha1, options);
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) throw error;
        return await this.#client.eval(script.source, options); // Redis restarted: load it again
      }
    } catch (error) {
      throw new RedisCommandError(`Redis at ${this.url}: ${describe(error)}`, { cause: error });
    }
  }

  /** Runs a plain command (e.g. `["FLUSHALL"]` in tests); fails like {@link run}. */
  async command(args: readonly string[]): Promise<unknown> {
    try {
      return await this.#client.sendCommand([...args]);
    } catch (error) {
      throw new RedisCommandError(`Redis at ${this.url}: ${describe(error)}`, { cause: error });
    }
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
