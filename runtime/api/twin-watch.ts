/**
 * A watch of one twin, for every protocol (gRPC `WatchTwin`, the REST WebSocket): the twin's
 * current state, then one message per persisted change, versions strictly increasing.
 *
 * Order of work, so no change falls between the snapshot and the feed: subscribe first, tell the
 * caller (a gRPC client may take the response headers as "the subscription is live"), read the
 * current view, send it, then send the changes that arrived meanwhile, skipping those the view
 * already includes.
 *
 * A change must follow the last version sent: its first event is the next version and its view
 * ends at its last event. One that does not (a change forged on the change subject, with version
 * 1e9, or a gap left by a lost message) is never sent; the watch reads the twin's current view
 * from the node instead and sends that if it is newer, so a forged version cannot silence the
 * real ones after it.
 *
 * Memory is bounded: changes wait in a queue only while the client is not draining, and a client
 * that falls more than `watchBufferLimit` changes behind is cut off with RESOURCE_EXHAUSTED (it
 * should watch again and take the current state again) instead of making the queue grow without limit.
 */
import { NotFound, ResourceExhausted } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type { EventRecord, TwinChange as FeedChange, TwinView } from "../core/records.ts";
import type { ServiceContext } from "./operations.ts";

/** Where a watch writes: a gRPC server stream, a WebSocket. */
export interface WatchSink<M> {
  /** False once the sink ended, failed, or the client went away. */
  readonly open: boolean;
  /** Writes a message; false when the client cannot take more now (wait for {@link drained}). */
  write(message: M): boolean;
  /** Resolves true once the client can take more, false if the sink closes first. */
  drained(): Promise<boolean>;
  /** Ends the sink with the error (the protocol's status or close code for it). */
  fail(error: unknown): void;
  /** Runs `fn` once when the sink closes for any reason. */
  onClose(fn: () => void): void;
}

export class TwinWatch<M> {
  /** Messages not yet handed to the sink, oldest first. */
  #queue: M[] = [];
  /** Changes that arrived before the initial state was sent. */
  #early: FeedChange[] | undefined = [];
  /** Version of the last view sent; changes at or below it are already reflected. */
  #sentVersion = 0;
  /** True once `#sentVersion` is the twin's known version (after the first view or change). */
  #baselineKnown = false;
  #ref: TwinRef | undefined;
  #resyncing: Promise<void> | undefined;
  #resyncAgain = false;
  #waitingForDrain = false;

  constructor(
    private readonly ctx: Pick<ServiceContext, "api" | "logger" | "watchBufferLimit">,
    private readonly stream: WatchSink<M>,
    private readonly encode: (view: TwinView, events: readonly EventRecord[]) => M,
  ) {}

  /**
   * Subscribes, calls `subscribed` (the subscription is live: gRPC sends its headers then), sends
   * the current view unless `skipCurrent`, then every change. Rejects only if reading the current
   * view fails (the caller fails the sink with it).
   */
  async start(ref: TwinRef, options: { skipCurrent?: boolean; subscribed?: () => void } = {}) {
    this.#ref = ref;
    const unsubscribe = this.ctx.api.watch(ref, (change) => this.#onChange(change));
    this.stream.onClose(() => {
      unsubscribe();
      this.#queue = [];
      this.#early = undefined;
    });
    if (!this.stream.open) return;
    options.subscribed?.();
    if (!options.skipCurrent) {
      const view = await this.#current(ref);
      if (view !== undefined) this.#enqueue(view, []);
      this.#baselineKnown = true;
    }
    const early = this.#early ?? [];
    this.#early = undefined;
    for (const change of early) this.#deliver(change);
  }

  /** The twin's view, or undefined when it has no events yet (nothing to show first). */
  async #current(ref: TwinRef): Promise<TwinView | undefined> {
    try {
      return await this.ctx.api.get(ref);
    } catch (error) {
      if (error instanceof NotFound) return undefined;
      throw error;
    }
  }

  #onChange(change: FeedChange): void {
    if (!this.stream.open) return;
    if (this.#early !== undefined) {
      this.#early.push(change);
      if (this.#early.length > this.ctx.watchBufferLimit) this.#overflow();
      return;
    }
    this.#deliver(change);
  }

  #deliver(change: FeedChange): void {
    if (typeof change.view?.version !== "number" || change.view.version <= this.#sentVersion) return;
    if (this.#baselineKnown && !this.#follows(change)) {
      this.ctx.logger.warn(
        { twin: this.#ref, after: this.#sentVersion, got: change.view.version },
        "watch: refused a change that does not follow the last version; reading the twin instead",
      );
      this.#resync();
      return;
    }
    this.#baselineKnown = true;
    this.#enqueue(change.view, change.events);
  }

  /** True when `change` starts right after the last version sent and ends at its view. */
  #follows(change: FeedChange): boolean {
    const events = Array.isArray(change.events) ? change.events : [];
    return (
      events.length > 0 &&
      events[0]?.seq === this.#sentVersion + 1 &&
      events[events.length - 1]?.seq === change.view.version &&
      change.view.version === this.#sentVersion + events.length
    );
  }

  /** Sends the twin's current view if it is newer than the last sent (one read at a time). */
  #resync(): void {
    if (this.#resyncing) {
      this.#resyncAgain = true;
      return;
    }
    const ref = this.#ref;
    if (!ref) return;
    this.#resyncing = this.#current(ref)
      .then((view) => {
        if (view !== undefined && view.version > this.#sentVersion) this.#enqueue(view, []);
      })
      .catch((error: unknown) => this.stream.fail(error))
      .finally(() => {
        this.#resyncing = undefined;
        if (this.#resyncAgain) {
          this.#resyncAgain = false;
          this.#resync();
        }
      });
  }

  #enqueue(view: TwinView, events: readonly EventRecord[]): void {
    if (!this.stream.open) return;
    this.#sentVersion = Math.max(this.#sentVersion, view.version);
    this.#queue.push(this.encode(view, events));
    if (this.#queue.length > this.ctx.watchBufferLimit) this.#overflow();
    else this.#pump();
  }

  #pump(): void {
    if (this.#waitingForDrain) return;
    while (this.#queue.length > 0 && this.stream.open) {
      const next = this.#queue.shift() as M;
      if (!this.stream.write(next)) {
        this.#waitingForDrain = true;
        void this.stream.drained().then((open) => {
          this.#waitingForDrain = false;
          if (open) this.#pump();
        });
        return;
      }
    }
  }

  #overflow(): void {
    this.stream.fail(
      new ResourceExhausted(
        `watcher too slow: more than ${this.ctx.watchBufferLimit} changes waiting; watch again to resume from the current state`,
        { limit: this.ctx.watchBufferLimit },
      ),
    );
  }
}
