/**
 * What every gateway handler shares: its context (the shared {@link ServiceContext} plus the
 * registry of open streams), the reading of a call's credentials for the shared pipeline
 * (`runtime/api/callers.ts`), the translation of a gRPC deadline into a `TwinApi` deadline, and
 * the wrapper that turns an operation into a unary handler that never throws into grpc-js.
 */
import type { PeerCertificate } from "node:tls";
import type * as grpc from "@grpc/grpc-js";
import {
  admitCaller,
  admitWork,
  type CallCredentials,
  type Caller,
  type CallPolicy,
} from "../api/callers.ts";
import { type Operation, perform, type ServiceContext } from "../api/operations.ts";
import type { Permit } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import type { TwinRef } from "../core/ids.ts";
import type { Logger } from "../observability/logger.ts";
import { inSpan, SpanKind, tracedParent } from "../observability/tracing.ts";
import { failure } from "./status.ts";
import type { StreamRegistry } from "./streams.ts";

export type { Caller, CallPolicy, CallSecurity } from "../api/callers.ts";
export type { TypeInfo } from "../api/operations.ts";

/** Everything a handler needs; built once by `startGateway`. */
export interface HandlerContext extends ServiceContext {
  /** Streams still open, so that stopping the gateway ends them. */
  readonly streams: StreamRegistry;
}

/** What the admission steps read of a server call (unary or streaming). */
export interface AdmittedCall {
  readonly metadata: grpc.Metadata;
  getAuthContext(): { readonly sslPeerCertificate?: PeerCertificate } | null;
  getPeer(): string;
}

/** A call's credentials as the shared pipeline reads them (each read only when the pipeline needs it). */
export function credentialsOf(call: AdmittedCall): CallCredentials {
  return {
    get authorization() {
      return call.metadata.get("authorization");
    },
    get peerCertificate() {
      return call.getAuthContext()?.sslPeerCertificate;
    },
    get peer() {
      return call.getPeer();
    },
    hint: "send 'authorization: Bearer <API key>' metadata (doppel --token, DOPPEL_TOKEN)",
  };
}

/** Steps 1–3 of the pipeline for a streaming call; counts refusals. */
export function admitStreamCaller<Req>(
  ctx: HandlerContext,
  call: AdmittedCall,
  policy: CallPolicy<Req>,
  request: Req,
): Caller {
  return admitCaller(ctx.security, credentialsOf(call), policy, request);
}

/** Step 4 for a finite stream (class `grpc`); release the permit when it ends. */
export function admitCall(ctx: HandlerContext, call: AdmittedCall, caller?: Caller): Permit | undefined {
  return admitWork(ctx.admission, "grpc", credentialsOf(call), caller);
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
 * Wraps an operation as a grpc-js unary handler: {@link perform} admits the caller (authenticated,
 * authorized for `target(request)`, rate-limited, admitted), `decode` turns the request into the
 * operation's input, and `encode` its output into the response. Whatever any of them throws is
 * answered through {@link failure}; nothing escapes to crash the process.
 */
export function unary<Req, Res, In, Out>(
  ctx: HandlerContext,
  operation: Operation<In, Out>,
  target: (request: NoInfer<Req>) => TwinRef | { readonly type: string } | undefined,
  decode: (request: NoInfer<Req>, call: grpc.ServerUnaryCall<Req, Res>) => In,
  encode: (output: Out) => NoInfer<Res>,
): grpc.handleUnaryCall<Req, Res> {
  const method = operation.name;
  return (call, callback) => {
    // Continue the caller's trace (W3C traceparent in the metadata), if it sent one.
    const parent = tracedParent((key) => {
      const value = call.metadata.get(key)[0];
      return typeof value === "string" ? value : undefined;
    });
    const run = async (): Promise<void> => {
      let response: Res;
      try {
        const output = await perform(
          ctx,
          operation,
          {
            credentials: credentialsOf(call),
            target: target(call.request),
            deadline: deadlineOf(call, ctx.clock),
          },
          () => decode(call.request, call),
        );
        response = encode(output);
      } catch (error) {
        const serviceError = failure(ctx.logger, method, error);
        if (serviceError.wire.code === "INVALID_ARGUMENT") ctx.rejected?.(serviceError.wire.code);
        guarded(ctx.logger, method, () => callback(serviceError));
        throw error; // marks the span failed; swallowed below
      }
      guarded(ctx.logger, method, () => callback(null, response));
    };
    // A traced call runs inside its span, so log lines (failures included) carry the trace id.
    void (
      parent !== undefined
        ? inSpan(`rpc TwinService/${method}`, SpanKind.SERVER, { "rpc.method": method }, run, parent)
        : run()
    ).catch(() => undefined);
  };
}
