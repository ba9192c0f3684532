/**
 * The store's connection to Cassandra: a `cassandra-driver` client configured from
 * {@link CassandraStoreConfig}, a {@link Limiter} bounding requests in flight, and small helpers
 * that run prepared statements at the configured consistency.
 *
 * Faults:
 * - At start, an unreachable cluster is retried with exponential backoff (0.25 s doubling to 5 s)
 *   for `startupRetry`; then `open` fails with `Unavailable` naming the contact points and the
 *   last error. Refused credentials or an unknown local data center fail at once
 *   (`FailedPrecondition`): retrying cannot fix them.
 * - While running, a lost cluster makes requests fail fast (`Unavailable`, see `failures.ts`);
 *   the driver reconnects in the background with `reconnect` backoff (0.25 s doubling to 5 s by
 *   default, never the driver's 10-minute default), so work resumes by itself when it returns.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import cassandra from "cassandra-driver";
import { type DoppelError, FailedPrecondition, InvalidArgument, Unavailable } from "../../core/errors.ts";
import { present } from "../../core/present.ts";
import { classify, describeDriverError, toDoppelError } from "./failures.ts";
import { Limiter } from "./limiter.ts";
import type { CassandraStoreConfig } from "./options.ts";

/** A prepared statement with its bound values. */
export interface Bound {
  readonly query: string;
  readonly params: readonly unknown[];
}

/** A row as returned by the driver. */
export type Row = cassandra.types.Row;

/** Callbacks for start-up progress (the node logs them). */
export interface SessionHooks {
  /** Called before each retry of an unreachable cluster at start. */
  readonly onRetry?: (attempt: number, delayMs: number, error: DoppelError) => void;
}

interface RunOptions {
  /** Which configured consistency to use (default: write for batches, read for selects). */
  readonly consistency?: "read" | "write" | "serial-write";
  readonly fetchSize?: number;
  readonly pageState?: string;
  /** See {@link SendGuard}. */
  readonly beforeSend?: SendGuard;
}

/**
 * Called when a request is about to go to the driver, after it got its slot in the limiter; a
 * `DoppelError` it throws refuses the request unsent and is rethrown as it is.
 */
export type SendGuard = () => void;

function tlsOptions(config: CassandraStoreConfig): ConnectionOptions | undefined {
  const tls = config.tls;
  if (!tls) return undefined;
  const read = (file: string | undefined, what: string) => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (error) {
      throw new InvalidArgument(`cassandra tls.${what}: cannot read ${file}: ${(error as Error).message}`);
    }
  };
  const options: ConnectionOptions = { rejectUnauthorized: tls.rejectUnauthorized };
  const ca = read(tls.caFile, "caFile");
  const cert = read(tls.certFile, "certFile");
  const key = read(tls.keyFile, "keyFile");
  if (ca) options.ca = ca;
  if (cert) options.cert = cert;
  if (key) options.key = key;
  if (tls.serverName) options.servername = tls.serverName;
  return options;
}

/** The driver options for `config` (exported for the unit test of the TLS and credentials wiring). */
export function clientOptions(config: CassandraStoreConfig): cassandra.ClientOptions {
  const { distance } = cassandra.types;
  const options: cassandra.ClientOptions = {
    contactPoints: [...config.contactPoints],
    localDataCenter: config.localDataCenter,
    socketOptions: { connectTimeout: config.connectTimeout, readTimeout: config.requestTimeout },
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(
        Math.max(1, config.reconnect.baseDelay),
        Math.max(1, config.reconnect.maxDelay),
        false,
      ),
    },
    queryOptions: {
      consistency: config.consistency.write,
      serialConsistency: config.consistency.serial,
      prepare: true,
    },
    pooling: { coreConnectionsPerHost: { [distance.local]: 2, [distance.remote]: 1 } },
    protocolOptions: { maxSchemaAgreementWaitSeconds: 30 },
  };
  if (config.credentials) options.credentials = { ...config.credentials };
  const tls = tlsOptions(config);
  if (tls) options.sslOptions = tls;
  return options;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** An open connection to the cluster. Create with {@link CassandraSession.connect}. */
export class CassandraSession {
  readonly #client: cassandra.Client;
  readonly #limiter: Limiter;
  readonly #config: CassandraStoreConfig;
  /** "cassandra 10.0.0.1:9042,10.0.0.2 (dc1) keyspace doppel": names the store in every error. */
  readonly label: string;
  #closed = false;

  private constructor(client: cassandra.Client, config: CassandraStoreConfig, label: string) {
    this.#client = client;
    this.#config = config;
    this.#limiter = new Limiter(config.maxConcurrentRequests);
    this.label = label;
  }

  /**
   * Connects, retrying an unreachable cluster with backoff for `config.startupRetry` ms. Fails with
   * `Unavailable` (unreachable: the message names the contact points and the last error) or
   * `FailedPrecondition` (credentials refused, local data center unknown).
   */
  static async connect(config: CassandraStoreConfig, hooks: SessionHooks = {}): Promise<CassandraSession> {
    const where = `${config.contactPoints.join(",")} (local data center ${config.localDataCenter})`;
    const label = `cassandra ${where} keyspace ${config.keyspace}`;
    const started = Date.now();
    let delay = 250;
    for (let attempt = 1; ; attempt++) {
      const client = new cassandra.Client(clientOptions(config));
      try {
        await client.connect();
        return new CassandraSession(client, config, label);
      } catch (error) {
        await client.shutdown().catch(() => {});
        const message = describeDriverError(error);
        const kind = classify(error);
        if (kind !== "unavailable" || /localDataCenter|data center/i.test(message)) {
          throw new FailedPrecondition(`cannot use Cassandra at ${where}: ${message}`, {
            contactPoints: [...config.contactPoints],
          });
        }
        const elapsed = Date.now() - started;
        const failure = new Unavailable(
          `cannot reach Cassandra at ${where} after ${attempt} attempt${attempt === 1 ? "" : "s"} ` +
            `over ${(elapsed / 1000).toFixed(1)} s: ${message}`,
          { contactPoints: [...config.contactPoints], attempts: attempt },
          { cause: error },
        );
        if (elapsed + delay > config.startupRetry) throw failure;
        hooks.onRetry?.(attempt, delay, failure);
        await sleep(delay);
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs one prepared statement (bounded by the limiter). Driver errors become typed errors. */
  async execute(
    operation: string,
    bound: Bound,
    options: RunOptions = {},
  ): Promise<cassandra.types.ResultSet> {
    this.#checkOpen(operation);
    const consistency =
      options.consistency === "read" ? this.#config.consistency.read : this.#config.consistency.write;
    const queryOptions: cassandra.QueryOptions = {
      prepare: true,
      consistency,
      // Every statement of the store is idempotent (fixed keys, fixed values, fixed timestamps for
      // derived data), except lightweight transactions: let the driver retry the others.
      isIdempotent: options.consistency !== "serial-write",
    };
    if (options.fetchSize !== undefined) queryOptions.fetchSize = options.fetchSize;
    if (options.pageState !== undefined) queryOptions.pageState = options.pageState;
    try {
      return await this.#limiter.run(() => {
        options.beforeSend?.();
        return this.#client.execute(bound.query, bound.params as unknown[], queryOptions);
      });
    } catch (error) {
      throw toDoppelError(error, this.label, operation);
    }
  }

  /** Reads every row of a (paged) select, at most `limit` rows, `pageSize` per round trip. */
  async readAll(
    operation: string,
    bound: Bound,
    limit = Number.POSITIVE_INFINITY,
    pageSize = 1000,
  ): Promise<Row[]> {
    const rows: Row[] = [];
    let pageState: string | undefined;
    do {
      const fetchSize = Math.max(1, Math.min(pageSize, limit - rows.length));
      const result = await this.execute(operation, bound, { consistency: "read", fetchSize, pageState });
      for (const row of result.rows) {
        if (rows.length >= limit) break;
        rows.push(row);
      }
      pageState = result.pageState ?? undefined;
    } while (pageState && rows.length < limit);
    return rows;
  }

  /**
   * Runs statements as one batch at write consistency. `logged`: Cassandra's batch log makes the
   * batch all-or-nothing across partitions (eventually, even if the coordinator dies).
   */
  async batch(
    operation: string,
    statements: readonly Bound[],
    logged: boolean,
    beforeSend?: SendGuard,
  ): Promise<void> {
    this.#checkOpen(operation);
    if (statements.length === 0) return;
    try {
      await this.#limiter.run(() => {
        beforeSend?.();
        return this.#client.batch(
          statements.map((s) => ({ query: s.query, params: s.params as unknown[] })),
          { prepare: true, logged, consistency: this.#config.consistency.write, isIdempotent: true },
        );
      });
    } catch (error) {
      throw toDoppelError(error, this.label, operation);
    }
  }

  /** Runs schema DDL (not bounded, waits for schema agreement). */
  async ddl(operation: string, cql: string): Promise<void> {
    this.#checkOpen(operation);
    try {
      await this.#client.execute(cql, [], { consistency: this.#config.consistency.write });
    } catch (error) {
      throw toDoppelError(error, this.label, operation);
    }
  }

  /** Runs a lightweight transaction; returns whether it applied and the row the server returned. */
  async conditional(
    operation: string,
    bound: Bound,
    beforeSend?: SendGuard,
  ): Promise<{ applied: boolean; row: Row | undefined }> {
    const result = await this.execute(operation, bound, {
      consistency: "serial-write",
      ...present({ beforeSend }),
    });
    return { applied: result.wasApplied(), row: result.first() ?? undefined };
  }

  /** Closes every connection. Later calls fail with `Unavailable`; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.shutdown();
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new Unavailable(`${this.label} is closed`, { operation });
  }
}
