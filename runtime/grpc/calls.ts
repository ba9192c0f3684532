/**
 * What every gateway handler shares: its context (the `TwinApi`, clock, logger, limits, the
 * registry of open streams), the translation of a gRPC deadline into a `TwinApi` deadline, the
 * logging of failed calls, and the wrapper that turns an async function into a unary handler that
 * can never crash the process. The call pipeline: admit (the node's bound on gRPC calls in flight,
 * see `core/admission.ts`) → handler.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Admission, Permit } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { present } from "../core/present.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import { extractContext, inSpan, SpanKind } from "../observability/tracing.ts";
import { failure } from "./status.ts";
import type { StreamRegistry } from "./streams.ts";

/** A twin type as `ListTypes` reports it. */
export interface TypeInfo {
  readonly name: string;
  readonly commands: readonly string[];
}

/** Everything a handler needs; built once by `startGateway`. */
export interface HandlerContext {
  readonly api: TwinApi;
  readonly types: () => readonly TypeInfo[];
  /** The cluster as this node sees it (`GetCluster`). */
  readonly cluster: () => Promise<ClusterView>;
  readonly logger: Logger;
  /** The node's clock: deadlines handed to the `TwinApi` are on this clock. */
  readonly clock: Clock;
  /** Events read from the store per `TwinApi.history` call while streaming `GetHistory`. */
  readonly historyPageSize: number;
  /** Changes a `WatchTwin` stream may hold for a slow client before it is ended with RESOURCE_EXHAUSTED. */
  readonly watchBufferLimit: number;
  /** Counts a request refused as invalid input (metrics); optional. */
  readonly rejected?: (code: string) => void;
  /** Streams still open, so that stopping the gateway ends them. */
  readonly streams: StreamRegistry;
  /** The node's admission control; absent: every call is admitted. */
  readonly admission?: Admission;
}

/** The client a call is admitted for (fairness): its peer, one HTTP/2 connection. */
export function clientOf(call: { getPeer(): string }): string {
  return call.getPeer();
}

/**
 * Admits a call of `class grpc` before any work is queued for it; over the bound it throws
 * `Throttled` (RESOURCE_EXHAUSTED with `retry-after-ms` in the trailers). Release the permit when
 * the call is answered.
 */
export function admitCall(ctx: HandlerContext, call: { getPeer(): string }): Permit | undefined {
  return ctx.admission?.admit("grpc", clientOf(call));
}

/**
 * The call's gRPC deadline as epoch ms on the node's clock (`undefined` when the client set none).
 * grpc-js reports deadlines on the wall clock; the offset is carried over, so a node running on a
 * test clock still gives the call the time the client allowed.
 */
export function deadlineOf(call: { getDeadline(): grpc.Deadline }, clock: Clock): number | undefined {
  const deadline = call.getDeadline();
  const wall = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(wall)) return undefined;
  return clock.now() + (wall - Date.now());
}

/** Runs `fn`, logging (never rethrowing) what it throws: for callbacks into grpc-js. */
function guarded(logger: Logger, method: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    logger.error({ method, err: error }, "gRPC callback threw");
  }
}

/**
 * Wraps an async request → response function as a grpc-js unary handler. Whatever `run` throws or
 * rejects with is answered through {@link failure}; nothing escapes to crash the process.
 */
export function unary<Req, Res>(
  ctx: HandlerContext,
  method: string,
  run: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    // Continue the caller's trace (W3C traceparent in the metadata), if it sent one.
    const parent = extractContext((key) => {
      const value = call.metadata.get(key)[0];
      return typeof value === "string" ? value : undefined;
    });
    // The whole call runs inside its span, so log lines (failures included) carry the trace id.
    void inSpan(
      `rpc TwinService/${method}`,
      SpanKind.SERVER,
      { "rpc.method": method },
      async () => {
        let response: Res;
        let permit: Permit | undefined;
        try {
          permit = admitCall(ctx, call);
          response = await run(call.request, call);
        } catch (error) {
          permit?.release();
          const serviceError = failure(ctx.logger, method, error);
          if (serviceError.wire.code === "INVALID_ARGUMENT") ctx.rejected?.(serviceError.wire.code);
          guarded(ctx.logger, method, () => callback(serviceError));
          throw error; // marks the span failed; swallowed below
        }
        permit?.release();
        guarded(ctx.logger, method, () => callback(null, response));
      },
      parent,
    ).catch(() => undefined);
  };
}
