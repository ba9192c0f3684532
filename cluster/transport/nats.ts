/**
 * NATS transport: {@link Transport} over a real NATS connection (nats.js v3). Core publish,
 * subscribe (with queue groups), request/reply; `publishDurable` is a JetStream publish with the
 * message id as `Nats-Msg-Id`, acknowledged by the stream's PubAck (`duplicate` when the stream
 * already holds a message with that id within its duplicate window).
 *
 * Failures are mapped onto {@link TransportError}: `timeout` (no reply / PubAck in time),
 * `no-responders` (nobody subscribes, or no stream captures the subject), `closed` (the
 * connection is closed or draining), `bad-subject`, and `rejected` (the server refused the message:
 * larger than the stream allows, stream full, permissions).
 *
 * The connection reconnects forever by default (devices and nodes outlive server restarts);
 * subscriptions are restored by nats.js after a reconnect. `onConnectionChange` reports drops and
 * recoveries so callers can buffer and re-sync.
 */
import { readFileSync } from "node:fs";
import { JetStreamApiError, type JetStreamClient, JetStreamError, jetstream } from "@nats-io/jetstream";
import {
  type Authenticator,
  ClosedConnectionError,
  credsAuthenticator,
  DrainingConnectionError,
  InvalidSubjectError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription as NatsSubscription,
  NoRespondersError,
  headers as natsHeaders,
  nkeyAuthenticator,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { validSubject } from "./subjects.ts";
import {
  type ConnectionState,
  type DurableAck,
  type Headers,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
  type Subscription,
  type Transport,
  TransportError,
  type TransportMessage,
} from "./transport.ts";

/** How to authenticate to NATS. One of these, or none. */
export type NatsCredentials =
  | { readonly user: string; readonly pass: string }
  | { readonly token: string }
  /** An nkey seed (`SU...`), or a file holding one. */
  | { readonly nkeySeed: string }
  | { readonly nkeyFile: string }
  /** A `.creds` file (JWT + nkey seed) as issued by `nsc`. */
  | { readonly credsFile: string };

export interface NatsTransportOptions {
  /** One URL or several (`nats://host:4222`); the client picks one and fails over. */
  readonly servers: string | readonly string[];
  readonly credentials?: NatsCredentials;
  /** Connection name shown by the server's monitoring. */
  readonly name?: string;
  /** Keep reconnecting forever (default) or give up after this many attempts. */
  readonly maxReconnectAttempts?: number;
  /** Wait between reconnect attempts, ms (default 1000). */
  readonly reconnectTimeWaitMs?: number;
  /** Keep retrying the first connection instead of failing at once (devices started before the server). */
  readonly waitOnFirstConnect?: boolean;
  /** Connection timeout, ms (default 5000). */
  readonly timeoutMs?: number;
  /** Prefix of this connection's reply subjects (default `_INBOX`); a device's permissions allow only its own. */
  readonly inboxPrefix?: string;
  /** Connect over TLS: PEM files of the CA to trust and, when the server asks for one, a client certificate. */
  readonly tls?: NatsTlsFiles;
}

/** TLS material for a NATS connection (PEM file paths). */
export interface NatsTlsFiles {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

function authenticator(credentials: NatsCredentials | undefined): {
  user?: string;
  pass?: string;
  token?: string;
  authenticator?: Authenticator;
} {
  if (!credentials) return {};
  if ("user" in credentials) return { user: credentials.user, pass: credentials.pass };
  if ("token" in credentials) return { token: credentials.token };
  const encoder = new TextEncoder();
  if ("nkeySeed" in credentials)
    return { authenticator: nkeyAuthenticator(encoder.encode(credentials.nkeySeed)) };
  if ("nkeyFile" in credentials) {
    const seed = readFileSync(credentials.nkeyFile, "utf8").trim();
    return { authenticator: nkeyAuthenticator(encoder.encode(seed)) };
  }
  return { authenticator: credsAuthenticator(readFileSync(credentials.credsFile)) };
}

const NO_HEADERS: Headers = new Map();

function toNatsHeaders(headers: Headers | undefined): MsgHdrs | undefined {
  if (!headers || headers.size === 0) return undefined;
  const h = natsHeaders();
  for (const [key, value] of headers) h.set(key, value);
  return h;
}

/** Converts nats.js headers to a plain map (last value of each key). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Headers {
  if (!h) return NO_HEADERS;
  const map = new Map<string, string>();
  for (const [key, values] of h) {
    const last = values[values.length - 1];
    if (last !== undefined) map.set(key, last);
  }
  return map;
}

function toMessage(msg: Msg): TransportMessage {
  // nats.js reports "no reply subject" as an empty string.
  return {
    subject: msg.subject,
    data: msg.data,
    headers: fromNatsHeaders(msg.headers),
    reply: msg.reply || undefined,
  };
}

/** Maps a nats.js error onto a {@link TransportError} (anything unknown is `rejected`). */
export function toTransportError(error: unknown, what: string): TransportError {
  if (error instanceof TransportError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error ? error.cause : undefined;
  if (error instanceof TimeoutError || cause instanceof TimeoutError)
    return new TransportError("timeout", `${what}: timed out`);
  if (
    error instanceof NoRespondersError ||
    cause instanceof NoRespondersError ||
    (error instanceof RequestError && error.isNoResponders())
  ) {
    return new TransportError("no-responders", `${what}: no responders`);
  }
  // A request still waiting when its connection closes is settled by nats.js with a RequestError
  // whose only mark is its message: no error class of its own, and nc.isClosed()/isDraining() are
  // still false when the rejection arrives (nats.js 3.4: MuxSubscription.close runs first).
  const closedWhileWaiting = error instanceof RequestError && message === "connection closed";
  if (
    error instanceof ClosedConnectionError ||
    error instanceof DrainingConnectionError ||
    closedWhileWaiting
  ) {
    return new TransportError("closed", `${what}: the connection is closed`);
  }
  if (error instanceof InvalidSubjectError) return new TransportError("bad-subject", `${what}: ${message}`);
  if (error instanceof PermissionViolationError) {
    return new TransportError("rejected", `${what}: permission denied (${message})`);
  }
  if (error instanceof JetStreamApiError || error instanceof JetStreamError) {
    return new TransportError("rejected", `${what}: ${message}`);
  }
  if (/timeout/i.test(message)) return new TransportError("timeout", `${what}: ${message}`);
  return new TransportError("rejected", `${what}: ${message}`);
}

export class NatsTransport implements Transport {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #listeners = new Set<(state: ConnectionState) => void>();
  readonly #subs = new Set<NatsSubscription>();
  #connected = true;
  #closed = false;

  private constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#js = jetstream(nc);
    void this.#watchStatus();
  }

  /** Connects. Fails with `TransportError("closed")` naming the servers when none can be reached. */
  static async connect(options: NatsTransportOptions): Promise<NatsTransport> {
    const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers];
    try {
      const nc = await connect({
        servers,
        ...authenticator(options.credentials),
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
        maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
        reconnectTimeWait: options.reconnectTimeWaitMs ?? 1000,
        waitOnFirstConnect: options.waitOnFirstConnect ?? false,
        timeout: options.timeoutMs ?? 5000,
        ...(options.tls === undefined ? {} : { tls: { ...options.tls } }),
      });
      return new NatsTransport(nc);
    } catch (error) {
      throw new TransportError(
        "closed",
        `cannot connect to NATS at ${servers.join(", ")}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** The underlying nats.js connection (for JetStream management by the ingress). */
  get connection(): NatsConnection {
    return this.#nc;
  }

  get connected(): boolean {
    return this.#connected && !this.#closed;
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      const state: ConnectionState | undefined =
        status.type === "disconnect" ? "disconnected" : status.type === "reconnect" ? "connected" : undefined;
      if (state === undefined || (state === "connected") === this.#connected) continue;
      this.#connected = state === "connected";
      for (const listener of this.#listeners) {
        try {
          listener(state);
        } catch {
          // A listener's failure is its own.
        }
      }
    }
  }

  onConnectionChange(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #check(subject: string, wildcards: boolean): void {
    if (this.#closed || this.#nc.isClosed()) throw new TransportError("closed", "transport is closed");
    if (!validSubject(subject, wildcards))
      throw new TransportError("bad-subject", `invalid subject ${JSON.stringify(subject)}`);
  }

  publish(subject: string, data: Uint8Array, options: PublishOptions = {}): void {
    this.#check(subject, false);
    const headers = toNatsHeaders(options.headers);
    try {
      this.#nc.publish(subject, data, headers ? { headers } : undefined);
    } catch (error) {
      throw toTransportError(error, `publish on ${subject}`);
    }
  }

  subscribe(
    subject: string,
    handler: (message: TransportMessage) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    this.#check(subject, true);
    const sub = this.#nc.subscribe(subject, {
      ...(options.queue === undefined ? {} : { queue: options.queue }),
      callback: (error, msg) => {
        if (error) return;
        try {
          handler(toMessage(msg));
        } catch {
          // A subscriber's failure is its own.
        }
      },
    });
    this.#subs.add(sub);
    return {
      unsubscribe: () => {
        this.#subs.delete(sub);
        if (!sub.isClosed()) sub.unsubscribe();
      },
    };
  }

  async request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage> {
    this.#check(subject, false);
    const headers = toNatsHeaders(options.headers);
    try {
      const reply = await this.#nc.request(subject, data, {
        timeout: options.timeoutMs,
        ...(headers ? { headers } : {}),
      });
      return toMessage(reply);
    } catch (error) {
      const failure = toTransportError(error, `request on ${subject}`);
      if (failure.failure === "timeout")
        throw new TransportError("timeout", `no reply on ${subject} within ${options.timeoutMs} ms`);
      if (failure.failure === "no-responders")
        throw new TransportError("no-responders", `no responders on ${subject}`);
      throw failure;
    }
  }

  respond(message: TransportMessage, data: Uint8Array, options: PublishOptions = {}): void {
    if (message.reply === undefined || this.#closed) return;
    try {
      this.publish(message.reply, data, options);
    } catch {
      // The connection is closing: the requester times out.
    }
  }

  async publishDurable(
    subject: string,
    data: Uint8Array,
    options: { messageId?: string; timeoutMs: number; headers?: Headers },
  ): Promise<DurableAck> {
    this.#check(subject, false);
    const headers = toNatsHeaders(options.headers);
    try {
      const ack = await this.#js.publish(subject, data, {
        timeout: options.timeoutMs,
        retries: 1,
        ...(options.messageId === undefined ? {} : { msgID: options.messageId }),
        ...(headers ? { headers } : {}),
      });
      return { duplicate: ack.duplicate };
    } catch (error) {
      const failure = toTransportError(error, `durable publish on ${subject}`);
      if (failure.failure === "no-responders") {
        throw new TransportError("no-responders", `no JetStream stream captures ${subject}`);
      }
      throw failure;
    }
  }

  /** Drains subscriptions (handlers finish what they got) and closes. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    if (this.#nc.isClosed()) return;
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => {});
    }
  }
}
