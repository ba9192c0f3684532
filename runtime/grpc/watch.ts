/**
 * `WatchTwin`: a twin's current state, then one `TwinChange` per persisted change, until the
 * client cancels or the gateway stops.
 *
 * Order of work, so no change falls between the snapshot and the feed: subscribe first, send the
 * response headers (a client may take them as "the subscription is live"), read the current view,
 * send it, then send the changes that arrived meanwhile, skipping those the view already includes.
 *
 * A change must follow the last version sent: its first event is the next version and its view
 * ends at its last event. One that does not (a change forged on the change subject, with version
 * 1e9, or a gap left by a lost message) is never sent; the watch reads the twin's current view
 * from the node instead and sends that if it is newer, so a forged version cannot silence the
 * real ones after it.
 *
 * Memory is bounded: changes wait in a queue only while the client is not draining, and a client
 * that falls more than `watchBufferLimit` changes behind is cut off with RESOURCE_EXHAUSTED (it
 * should re-watch and take the current state again) instead of making the queue grow without limit.
 */

import * as grpc from "@grpc/grpc-js";
import { clientOf } from "../api/callers.ts";
import { NotFound, ResourceExhausted } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type { TwinChange as FeedChange, TwinView } from "../core/records.ts";
import { admitStreamCaller, type HandlerContext } from "./calls.ts";
import type { TwinChange } from "./generated/doppel/v1/TwinChange.ts";
import type { TwinServiceHandlers } from "./generated/doppel/v1/TwinService.ts";
import type { WatchTwinRequest__Output } from "./generated/doppel/v1/WatchTwinRequest.ts";
import { eventToMessage, viewToTwin } from "./messages.ts";
import { OutboundStream } from "./streams.ts";

class TwinWatch {
  /** Changes not yet handed to grpc-js, oldest first. */
  #queue: TwinChange[] = [];
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
    private readonly ctx: HandlerContext,
    private readonly stream: OutboundStream<TwinChange>,
  ) {}

  async start(request: WatchTwinRequest__Output, call: { sendMetadata(metadata: grpc.Metadata): void }) {
    const ref: TwinRef = { type: request.type, id: request.id };
    this.#ref = ref;
    const unsubscribe = this.ctx.api.watch(ref, (change) => this.#onChange(change));
    this.stream.onClose(() => {
      unsubscribe();
      this.#queue = [];
      this.#early = undefined;
    });
    if (!this.stream.open) return;
    call.sendMetadata(new grpc.Metadata());
    if (!request.skipCurrent) {
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
        "WatchTwin: refused a change that does not follow the last version; reading the twin instead",
      );
      this.#resync();
      return;
    }
    this.#baselineKnown = true;
    this.#enqueue(change.view, change.events.map(eventToMessage));
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

  #enqueue(view: TwinView, events: TwinChange["events"]): void {
    if (!this.stream.open) return;
    this.#sentVersion = Math.max(this.#sentVersion, view.version);
    this.#queue.push({ twin: viewToTwin(view), events });
    if (this.#queue.length > this.ctx.watchBufferLimit) this.#overflow();
    else this.#pump();
  }

  #pump(): void {
    if (this.#waitingForDrain) return;
    while (this.#queue.length > 0 && this.stream.open) {
      const next = this.#queue.shift() as TwinChange;
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

/** The `WatchTwin` handler. */
export function watchHandler(ctx: HandlerContext): TwinServiceHandlers["WatchTwin"] {
  return (call) => {
    const stream = new OutboundStream<TwinChange>(call, ctx.streams, ctx.logger, "WatchTwin");
    try {
      const { type, id } = call.request;
      const caller = admitStreamCaller(
        ctx,
        call,
        { scope: "read", target: () => ({ type, id }) },
        call.request,
      );
      // A watch holds its permit (class `watch`) until the stream ends, however it ends.
      const permit = ctx.admission?.admit("watch", clientOf(call.getPeer(), caller));
      if (permit) stream.onClose(() => permit.release());
    } catch (error) {
      stream.fail(error);
      return;
    }
    new TwinWatch(ctx, stream).start(call.request, call).catch((error: unknown) => stream.fail(error));
  };
}
