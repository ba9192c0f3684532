/**
 * What every gateway handler shares: its context (the `TwinApi`, clock, logger, limits, the
 * registry of open streams), the translation of a gRPC deadline into a `TwinApi` deadline, the
 * logging of failed calls, and the wrapper that turns an async function into a unary handler that
 */
import type { PeerCertificate } from "node:tls";
import type * as grpc from "@grpc/grpc-js";
import type { Admission, Permit } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { ResourceExhausted, Unauthenticated } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import { present } from "../core/present.ts";
import { ANONYMOUS, authorize, type Principal, principalLabel, type Scope } from "../core/principal.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import { extractContext, inSpan, SpanKind } from "../observability/tracing.ts";
import type { ApiKeyLimits, ApiKeys } from "../security/api-keys.ts";
import { type ClientCertificateRule, certificatePrincipal } from "../security/client-certificates.ts";
import type { RateLimit, RateLimiter } from "../security/rate-limiter.ts";
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
  /** Who may call; absent: no security configured, every caller is {@link ANONYMOUS}. */
  readonly security?: CallSecurity;
}

/** How the gateway authenticates, authorizes and limits callers. */
export interface CallSecurity {
  /** API keys accepted as `authorization: Bearer <key>`; absent: none. */
  readonly keys?: ApiKeys;
  /** mTLS: rules mapping a verified client certificate to a principal; absent: certificates are not identities. */
  readonly certificateRules?: readonly ClientCertificateRule[];
  /** Token buckets per principal; absent: no rate limits. */
  readonly limiter?: RateLimiter;
  /** The bucket of a key that sets no limit of its own, and of mTLS principals; absent: unlimited. */
  readonly defaultRate?: RateLimit;
  /** Counts a call refused by a rate limit (metrics). */
  readonly throttled?: (principal: Principal) => void;
  /** Counts a call refused as unauthenticated or not permitted (metrics). */
  readonly refused?: (code: "UNAUTHENTICATED" | "PERMISSION_DENIED") => void;
}

/** What a method requires: its scope, and (when it names one) the twin or type it touches. */
export interface CallPolicy<Req> {
  readonly scope: Scope;
  readonly target?: (request: Req) => TwinRef | { readonly type: string };
}

/** An authenticated caller: who it is and the limits its credential carries. */
export interface Caller {
  readonly principal: Principal;
  readonly limits?: ApiKeyLimits | undefined;
}

/** What the admission steps read of a server call (unary or streaming). */
export interface AdmittedCall {
  readonly metadata: grpc.Metadata;
  getAuthContext(): { readonly sslPeerCertificate?: PeerCertificate } | null;
}

const ANONYMOUS_CALLER: Caller = { principal: ANONYMOUS };
const BEARER = /^bearer\s+(\S*)\s*$/i;

/** The call's peer certificate when it came over mTLS with a verified client certificate. */
function peerCertificate(call: AdmittedCall) {
  const auth = call.getAuthContext();
  const certificate = auth?.sslPeerCertificate;
  return certificate !== undefined && Object.keys(certificate).length > 0 ? certificate : undefined;
}

/**
 * Step 1: who is calling. An `authorization: Bearer <key>` header names an API key (it wins over a
 * client certificate); otherwise a verified client certificate maps to a principal by the rules;
 * otherwise `Unauthenticated`. Without security configured, every caller is anonymous.
 */
export function authenticate(security: CallSecurity | undefined, call: AdmittedCall): Caller {
  if (security === undefined) return ANONYMOUS_CALLER;
  const headers = call.metadata.get("authorization");
  if (headers.length > 1) throw new Unauthenticated("more than one authorization header");
  const header = headers[0];
  if (header !== undefined) {
    if (typeof header !== "string") throw new Unauthenticated("the authorization header must be text");
    const match = BEARER.exec(header);
    if (match === null) throw new Unauthenticated("the authorization header must be 'Bearer <API key>'");
    if (security.keys === undefined) throw new Unauthenticated("this node accepts no API keys");
    return security.keys.authenticate(match[1] ?? "");
  }
  const certificate = security.certificateRules ? peerCertificate(call) : undefined;
  if (certificate !== undefined) {
    return { principal: certificatePrincipal(certificate, security.certificateRules ?? []) };
  }
  throw new Unauthenticated(
    "missing credential: send 'authorization: Bearer <API key>' metadata (doppel --token, DOPPEL_TOKEN)" +
      (security.certificateRules ? " or a client certificate" : ""),
  );
}

/** Step 2: the caller holds the method's scope and may touch its twin (`PermissionDenied` otherwise). */
export function authorizeCall<Req>(caller: Caller, policy: CallPolicy<Req>, request: Req): void {
  authorize(caller.principal, policy.scope, policy.target?.(request));
}

/** Step 3: the caller's token bucket has a token (`ResourceExhausted` with `retryAfterMs` otherwise). */
export function rateLimit(security: CallSecurity | undefined, caller: Caller): void {
  const limiter = security?.limiter;
  if (limiter === undefined || caller.principal.kind === "anonymous") return;
  const own = caller.limits?.ratePerSecond;
  const limit: RateLimit | undefined =
    own !== undefined
      ? { ratePerSecond: own, ...present({ burst: caller.limits?.burst }) }
      : security?.defaultRate;
  if (limit === undefined) return;
  const label = principalLabel(caller.principal);
  const decision = limiter.take(label, limit);
  if (decision.allowed) return;
  security?.throttled?.(caller.principal);
  throw new ResourceExhausted(
    `${label} is over its rate limit (${limit.ratePerSecond}/s); retry in ${decision.retryAfterMs} ms`,
    { retryAfterMs: decision.retryAfterMs, principal: label },
  );
}

/** Steps 1–3 for one call; counts refusals. Returns the caller the handler acts for. */
export function admitCaller<Req>(
  ctx: HandlerContext,
  call: AdmittedCall,
  policy: CallPolicy<Req>,
  request: Req,
): Caller {
  try {
    const caller = authenticate(ctx.security, call);
    authorizeCall(caller, policy, request);
    rateLimit(ctx.security, caller);
    return caller;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "UNAUTHENTICATED" || code === "PERMISSION_DENIED") ctx.security?.refused?.(code);
    throw error;
  }
}

/**
 * The client a call is admitted for (fairness): its principal when it authenticated (every
 * connection of one API key or certificate shares the key's share), else its peer (one HTTP/2
 * connection).
 */
export function clientOf(call: { getPeer(): string }, caller?: Caller): string {
  const principal = caller?.principal;
  return principal !== undefined && principal.kind !== "anonymous"
    ? principalLabel(principal)
    : `peer:${call.getPeer()}`;
}

/**
 * Step 4, after rate-limit: admits a call of class `grpc` before any work is queued for it; over
 * the bound it throws `Throttled` (RESOURCE_EXHAUSTED with `retry-after-ms` in the trailers).
 * Release the permit when the call is answered.
 */
export function admitCall(
  ctx: HandlerContext,
  call: { getPeer(): string },
  caller?: Caller,
): Permit | undefined {
  return ctx.admission?.admit("grpc", clientOf(call, caller));
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
 * Wraps an async request → response function as a grpc-js unary handler: the caller is admitted
 * ({@link admitCaller}: authenticated, authorized by `policy`, rate-limited), then `run` answers.
 * Whatever either throws or rejects with is answered through {@link failure}; nothing escapes to
 * crash the process.
 */
export function unary<Req, Res>(
  ctx: HandlerContext,
  method: string,
  policy: CallPolicy<NoInfer<Req>>,
  run: (request: Req, call: grpc.ServerUnaryCall<Req, Res>, caller: Caller) => Promise<Res> | Res,
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
          const caller = admitCaller(ctx, call, policy, call.request);
          permit = admitCall(ctx, call, caller);
          response = await run(call.request, call, caller);
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
