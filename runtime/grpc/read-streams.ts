/**
 * `GetHistory` and `GetTelemetry`: finite server streams read from the store. History is read in
 * pages (`historyPageSize` events per `TwinApi.history` call, the next page starting after the
 * last version seen) so a long history never sits in memory whole. Both wait for the client to
 * drain before writing more, and stop reading as soon as the client cancels.
 */

import { historyPages, OPERATIONS } from "../api/operations.ts";
import type { Permit } from "../core/admission.ts";
import type { TwinRef } from "../core/ids.ts";
import { present } from "../core/present.ts";
import { admitCall, admitStreamCaller, type HandlerContext } from "./calls.ts";
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
    const caller = admitStreamCaller(ctx, call, { scope: "read", target: () => ref }, request);
    permit = admitCall(ctx, call, caller);
    const pages = historyPages(ctx, {
      ref,
      ...present({
        fromVersion: positive(request.fromVersion),
        toVersion: positive(request.toVersion),
        since: timestampToMs(request.since, "since"),
        until: timestampToMs(request.until, "until"),
        limit: positive(request.limit),
      }),
    });
    for await (const page of pages) {
      for (const event of page) if (!(await send(stream, eventToMessage(event)))) return;
      if (!stream.open) return;
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
    const caller = admitStreamCaller(
      ctx,
      call,
      { scope: "read", target: () => ({ type: request.type, id: request.id }) },
      request,
    );
    permit = admitCall(ctx, call, caller);
    const samples = await OPERATIONS.getTelemetry.run(
      ctx,
      {
        ref: { type: request.type, id: request.id },
        since: timestampToMs(request.since, "since"),
        until: timestampToMs(request.until, "until"),
        limit: positive(request.limit),
        intervalMs: durationToMs(request.interval, "interval"),
      },
      { caller },
    );
    for (const sample of samples) if (!(await send(stream, sampleToMessage(sample)))) return;
    stream.end();
  } catch (error) {
    stream.fail(error);
  } finally {
    permit?.release();
  }
}

/** A proto3 number where 0 means "not set". */
function positive(value: number): number | undefined {
  return value === 0 ? undefined : value;
}

/** The history-streaming handler and the telemetry-streaming handler. */
export function readStreamHandlers(ctx: HandlerContext): ReadStreamHandlers {
  return {
    GetHistory: (call) => void streamHistory(ctx, call),
    GetTelemetry: (call) => void streamTelemetry(ctx, call),
  };
}
