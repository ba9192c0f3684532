/**
 * Server-side streams: {@link OutboundStream} wraps a grpc-js server stream with backpressure
 * (`write` says when to wait, `drained` waits), one way to finish (`end` or `fail`, once), and
 * notice of the client cancelling. {@link StreamRegistry} holds the open ones so that stopping the
 * gateway ends them instead of waiting for them.
 */

import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "../observability/logger.ts";
import { failure } from "./status.ts";

/** The open streams of a gateway. */
export class StreamRegistry {
  readonly #open = new Set<OutboundStream<unknown>>();
  #closedWith: unknown;
  #closed = false;

  /** Adds a stream; if the registry is already closed, fails it at once. */
  add(stream: OutboundStream<unknown>): void {
    if (this.#closed) {
      stream.fail(this.#closedWith);
      return;
    }
    this.#open.add(stream);
  }

  /** Forgets a stream that has closed. */
  remove(stream: OutboundStream<unknown>): void {
    this.#open.delete(stream);
  }

  /** Number of open streams. */
  get size(): number {
    return this.#open.size;
  }

  /** Fails every open stream (and every one added later) with `error`. */
  closeAll(error: unknown): void {
    this.#closed = true;
    this.#closedWith = error;
    for (const stream of [...this.#open]) stream.fail(error);
  }
}

/**
 * One server stream's outbound side. Invariant: after `end`, `fail` or the client's cancel, nothing
 * more is written and the `onClose` callbacks have run exactly once.
 */
export class OutboundStream<T> {
  #closed = false;
  readonly #onClose: (() => void)[] = [];
  readonly #drainWaiters = new Set<(open: boolean) => void>();

  constructor(
    private readonly call: grpc.ServerWritableStream<unknown, T>,
    private readonly registry: StreamRegistry,
    private readonly logger: Logger,
    readonly method: string,
  ) {
    const cancelled = () => this.#close();
    call.on("cancelled", cancelled);
    call.on("close", cancelled);
    call.on("drain", () => this.#wake(true));
    registry.add(this as OutboundStream<unknown>);
  }

  /** False once the stream ended, failed, or the client went away. */
  get open(): boolean {
    return !this.#closed && !this.call.cancelled;
  }

  /** Runs `fn` once when the stream closes for any reason (at once if it already has). */
  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#onClose.push(fn);
  }

  /**
   * Writes a message. Returns false when the client cannot take more now: wait for
   * {@link drained} before writing again. Writing to a closed stream does nothing and returns false.
   */
  write(message: T): boolean {
    if (!this.open) return false;
    return this.call.write(message);
  }

  /** Resolves true once the client can take more messages, false if the stream closes first. */
  drained(): Promise<boolean> {
    if (!this.open) return Promise.resolve(false);
    if (!this.call.writableNeedDrain) return Promise.resolve(true);
    return new Promise((resolve) => this.#drainWaiters.add(resolve));
  }

  /** Ends the stream with status OK. */
  end(): void {
    if (!this.#close()) return;
    try {
      this.call.end();
    } catch (error) {
      this.logger.error({ method: this.method, err: error }, "could not end gRPC stream");
    }
  }

  /** Ends the stream with the status `error` maps to (logged like a failed unary call). */
  fail(error: unknown): void {
    if (!this.#close()) return;
    const serviceError = failure(this.logger, this.method, error);
    try {
      // grpc-js sends the status of an 'error' event once the messages already written are flushed.
      this.call.emit("error", serviceError);
    } catch (emitError) {
      this.logger.error({ method: this.method, err: emitError }, "could not fail gRPC stream");
    }
  }

  /** Marks the stream closed; true only for the first caller. */
  #close(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    this.registry.remove(this as OutboundStream<unknown>);
    this.#wake(false);
    for (const fn of this.#onClose.splice(0)) {
      try {
        fn();
      } catch (error) {
        this.logger.error({ method: this.method, err: error }, "stream close callback threw");
      }
    }
    return true;
  }

  #wake(open: boolean): void {
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const resolve of waiters) resolve(open && this.open);
  }
}
