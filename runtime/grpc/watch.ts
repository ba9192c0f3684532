/**
 * `WatchTwin`: a twin's current state, then one `TwinChange` per persisted change, until the
 * client cancels or the gateway stops. The watch itself (ordering, forged-change screening, the
 * bound on a slow client) is the shared {@link TwinWatch}; this is its gRPC side.
 */

import * as grpc from "@grpc/grpc-js";
import { clientOf } from "../api/callers.ts";
import { TwinWatch } from "../api/twin-watch.ts";
import { admitStreamCaller, type HandlerContext } from "./calls.ts";
import type { TwinChange } from "./generated/doppel/v1/TwinChange.ts";
import type { TwinServiceHandlers } from "./generated/doppel/v1/TwinService.ts";
import { eventToMessage, viewToTwin } from "./messages.ts";
import { OutboundStream } from "./streams.ts";

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
    const watch = new TwinWatch<TwinChange>(ctx, stream, (view, events) => ({
      twin: viewToTwin(view),
      events: events.map(eventToMessage),
    }));
    watch
      .start(
        { type: call.request.type, id: call.request.id },
        { skipCurrent: call.request.skipCurrent, subscribed: () => call.sendMetadata(new grpc.Metadata()) },
      )
      .catch((error: unknown) => stream.fail(error));
  };
}
