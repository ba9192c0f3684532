/**
 * `GetHistory` and `GetTelemetry`: finite server streams read from the store. History is read in
 * pages (`historyPageSize` events per `TwinApi.history` call, the next page starting after the
 * last version seen) so a long history never sits in memory whole. Both wait for the client to
 * drain before writing more, and stop reading as soon as the client cancels.
 */

import type { Permit } from "../core/admission.ts";
import type { TwinRef } from "../core/ids.ts";
import { present } from "../core/present.ts";
import type { HistoryRange } from "../core/records.ts";
import { admitCall, admitCaller, type HandlerContext } from "./calls.ts";
import type { TwinServiceHandlers } from "./generated/doppel/v1/TwinService.ts";
import { eventToMessage, sampleToMessage } from "./messages.ts";
import { OutboundStream } from "./streams.ts";
import { durationToMs, timestampToMs } from "./struct.ts";

type ReadStreamHandlers = Pick<TwinServiceHandlers, "GetHistory" | "GetTelemetry">;

/** Writes `message`, then waits for the client if it asked to; false once the stream is gone. */
async function send<T>(stream: OutboundStream<T>, message: T): Promise<boolean> {
  return stream.write(message) || (await stream.drained());
}

/** A server stream of `GetHistory` as the handlers receive it. */
type HistoryCall = Parameters<TwinServiceHandlers["GetHistory"]>[0];
/** A server stream of `GetTelemetry` as the handlers receive it. */
type TelemetryCall = Parameters<TwinServiceHandlers["GetTelemetry"]>[0];

/**
 * Streams the events of `call.request`'s range, page by page, and ends the stream (OK, or the
 * mapped error). Resolves when done; never rejects.
 */
export async function streamHistory(ctx: HandlerContext, call: HistoryCall): Promise<void> {
  const stream = new OutboundStream(call, ctx.streams, ctx.logger, "GetHistory");
  let permit: Permit | undefined;
  try {
    const request = call.request;
    const ref: TwinRef = { type: request.type, id: request.id };
    const caller = admitCaller(ctx, call, { scope: "read", target: () => ref }, request);
    permit = admitCall(ctx, call, caller);
    const since = timestampToMs(request.since, "since");
    const until = timestampToMs(request.until, "until");
    const toVersion = request.toVersion === 0 ? undefined : request.toVersion;
    const bounds: Omit<HistoryRange, "limit" | "fromVersion"> = {
      ...present({ toVersion, since, until }),
    };
    let fromVersion = request.fromVersion === 0 ? undefined : request.fromVersion;
    let remaining = request.limit === 0 ? Number.POSITIVE_INFINITY : request.limit;
    while (stream.open) {
      const limit = Math.min(ctx.historyPageSize, remaining);
      const page = await ctx.api.history(ref, {
        ...bounds,
        ...present({ fromVersion }),
        limit,
      });
      for (const event of page) if (!(await send(stream, eventToMessage(event)))) return;
      remaining -= page.length;
      const last = page.at(-1);
      if (last === undefined || page.length < limit || remaining <= 0) break;
      fromVersion = last.seq + 1;
      if (toVersion !== undefined && fromVersion > toVersion) break;
    }
    stream.end();
  } catch (error) {
    stream.fail(error);
  } finally {
    permit?.release();
  }
}

/** Streams the telemetry samples of `call.request` and ends the stream. Resolves when done; never rejects. */
export async function streamTelemetry(ctx: HandlerContext, call: TelemetryCall): Promise<void> {
  const stream = new OutboundStream(call, ctx.streams, ctx.logger, "GetTelemetry");
  let permit: Permit | undefined;
  try {
    const request = call.request;
    const caller = admitCaller(
      ctx,
      call,
      { scope: "read", target: () => ({ type: request.type, id: request.id }) },
      request,
    );
    permit = admitCall(ctx, call, caller);
    const since = timestampToMs(request.since, "since") ?? 0;
    // "Unset: now", inclusive of a sample stamped this very millisecond (stores treat `until` as exclusive).
    const until = timestampToMs(request.until, "until") ?? ctx.clock.now() + 1;
    const intervalMs = durationToMs(request.interval, "interval");
    const samples = await ctx.api.telemetry(
      { type: request.type, id: request.id },
      {
        since,
        until,
        ...(request.limit === 0 ? {} : { limit: request.limit }),
        ...present({ intervalMs }),
      },
    );
    for (const sample of samples) if (!(await send(stream, sampleToMessage(sample)))) return;
    stream.end();
  } catch (error) {
    stream.fail(error);
  } finally {
    permit?.release();
  }
}

/** The history-streaming handler and the telemetry-streaming handler. */
export function readStreamHandlers(ctx: HandlerContext): ReadStreamHandlers {
  return {
    GetHistory: (call) => void streamHistory(ctx, call),
    GetTelemetry: (call) => void streamTelemetry(ctx, call),
  };
}
