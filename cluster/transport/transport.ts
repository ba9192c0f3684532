/**
 * `Transport`: subject-based messaging between devices, nodes and services. Two implementations:
 * NATS (devices and clusters) and in-process (the embedded default and tests). Subjects follow
 * NATS rules: tokens separated by `.`, `*` matches one token, `>` matches the rest.
 */

/** Message headers (NATS headers; empty in-process unless set). */
export type Headers = ReadonlyMap<string, string>;

/** A received message. */
export interface TransportMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Headers;
  /** Where a reply goes, if the sender expects one. */
  readonly reply: string | undefined;
}

export interface Subscription {
  unsubscribe(): void;
}

export interface PublishOptions {
  readonly headers?: Headers;
}

export interface RequestOptions extends PublishOptions {
  readonly timeoutMs: number;
}

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  readonly queue?: string;
}

/**
 * Why a transport operation failed. `rejected`: the server refused the message itself (too large
 * for the stream, no space left, a stream limit): sending it again will fail the same way.
 */
export type TransportFailure = "timeout" | "no-responders" | "closed" | "bad-subject" | "rejected";

export class TransportError extends Error {
  constructor(
    readonly failure: TransportFailure,
    message: string,
  ) {
    super(message);
    this.name = "TransportError";
  }
}

/** Acknowledgement of a durable publish: the message is stored (and will be processed). */
export interface DurableAck {
  /** Set when the message was a duplicate of one already stored (same message id). */
  readonly duplicate: boolean;
  /** The reply body of the party that stored it, when there is one. */
  readonly data?: Uint8Array;
}

export interface Transport {
  /** Fire and forget. */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): void;
  /**
   * False when this transport knows that a message published on `subject` now would reach no one
   * (the in-process bus sees every subscription), so a publisher may skip encoding it. Absent on
   * transports that cannot know (NATS: a device may subscribe through any server).
   */
  reachesAnyone?(subject: string): boolean;
  /** Calls `handler` for each message on `subject` (wildcards allowed). Handler errors are isolated. */
  subscribe(
    subject: string,
    handler: (message: TransportMessage) => void,
    options?: SubscribeOptions,
  ): Subscription;
  /** Sends a request and waits for the first reply. Fails with `no-responders` or `timeout`. */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage>;
  /** Answers a message that has a reply subject. */
  respond(message: TransportMessage, data: Uint8Array, options?: PublishOptions): void;
  /**
   * Publishes a message that must not be lost and resolves once it is stored: in a JetStream
   * stream on NATS, or processed and persisted by the node in-process. `messageId` deduplicates.
   */
  publishDurable(
    subject: string,
    data: Uint8Array,
    options: { messageId?: string; timeoutMs: number; headers?: Headers },
  ): Promise<DurableAck>;
  /** Closes the connection (pending requests fail with `closed`). */
  close(): Promise<void>;
  /**
   * Connection state changes, for transports that can lose their server (NATS): `disconnected`
   * when the link drops, `connected` when it is back (subscriptions are restored by then).
   * Absent on transports that are always connected (in-process). Returns the unsubscribe.
   */
  onConnectionChange?(listener: (state: ConnectionState) => void): () => void;
  /** False while a transport that can lose its server is disconnected. */
  readonly connected?: boolean;
}

/** See {@link Transport.onConnectionChange}. */
export type ConnectionState = "connected" | "disconnected";
