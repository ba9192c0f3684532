/**
 * What every service entry point (the gRPC gateway, the REST API) does before it touches a twin,
 * in this order: authenticate the caller (an API key as `Bearer`, else a verified client
 * certificate), authorize it for the operation's scope and target, take a token from its rate
 * bucket, then admit the call under the node's admission control. Written once here so both
 * protocols refuse the same callers with the same errors.
 */
import type { PeerCertificate } from "node:tls";
import type { Admission, Permit, WorkClass } from "../core/admission.ts";
import { ResourceExhausted, Unauthenticated } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import { present } from "../core/present.ts";
import { ANONYMOUS, authorize, type Principal, principalLabel, type Scope } from "../core/principal.ts";
import type { ApiKeyLimits, ApiKeys } from "../security/api-keys.ts";
import { type ClientCertificateRule, certificatePrincipal } from "../security/client-certificates.ts";
import type { RateLimit, RateLimiter } from "../security/rate-limiter.ts";

/** How an entry point authenticates, authorizes and limits callers. */
export interface CallSecurity {
  /** API keys accepted as `authorization: Bearer <key>`; absent: none. */
  readonly keys?: ApiKeys;
  /** mTLS: rules mapping a verified client certificate to a principal; absent: certificates are not identities. */
  readonly certificateRules?: readonly ClientCertificateRule[];
  /** Token buckets per principal; absent: no rate limits. */
  readonly limiter?: RateLimiter;
  /** The bucket of a key or certificate rule that sets no rate of its own; absent: unlimited. */
  readonly defaultRate?: RateLimit;
  /** Counts a call refused by a rate limit (metrics). */
  readonly throttled?: (principal: Principal) => void;
  /** Counts a call refused as unauthenticated or not permitted (metrics). */
  readonly refused?: (code: "UNAUTHENTICATED" | "PERMISSION_DENIED") => void;
}

/** What an operation requires: its scope, and (when it names one) the twin or type it touches. */
export interface CallPolicy<Req> {
  readonly scope: Scope;
  readonly target?: (request: Req) => TwinRef | { readonly type: string };
}

/** An authenticated caller: who it is and the limits its credential carries. */
export interface Caller {
  readonly principal: Principal;
  readonly limits?: ApiKeyLimits | undefined;
}

/** What the pipeline reads of a request, whatever protocol it came over. */
export interface CallCredentials {
  /** Every value of the `authorization` header (gRPC metadata or HTTP). */
  readonly authorization: readonly unknown[];
  /** The client certificate the TLS handshake verified, if any. */
  readonly peerCertificate?: PeerCertificate | undefined;
  /** The connection (`ip:port`): the client an anonymous call is admitted for. */
  readonly peer: string;
  /** What to tell a caller that sent no credential, e.g. "send 'authorization: Bearer <API key>' metadata". */
  readonly hint: string;
}

const ANONYMOUS_CALLER: Caller = { principal: ANONYMOUS };
const BEARER = /^bearer\s+(\S*)\s*$/i;

/** A certificate as Node reports it, or undefined when there is none (Node gives `{}` then). */
export function verifiedCertificate(certificate: PeerCertificate | undefined): PeerCertificate | undefined {
  return certificate !== undefined && certificate !== null && Object.keys(certificate).length > 0
    ? certificate
    : undefined;
}

/**
 * Step 1: who is calling. An `authorization: Bearer <key>` header names an API key (it wins over a
 * client certificate); otherwise a verified client certificate maps to a principal by the rules;
 * otherwise `Unauthenticated`. Without security configured, every caller is anonymous.
 */
export function authenticate(security: CallSecurity | undefined, credentials: CallCredentials): Caller {
  if (security === undefined) return ANONYMOUS_CALLER;
  const headers = credentials.authorization;
  if (headers.length > 1) throw new Unauthenticated("more than one authorization header");
  const header = headers[0];
  if (header !== undefined) {
    if (typeof header !== "string") throw new Unauthenticated("the authorization header must be text");
    const match = BEARER.exec(header);
    if (match === null) throw new Unauthenticated("the authorization header must be 'Bearer <API key>'");
    if (security.keys === undefined) throw new Unauthenticated("this node accepts no API keys");
    return security.keys.authenticate(match[1] ?? "");
  }
  const certificate = security.certificateRules
    ? verifiedCertificate(credentials.peerCertificate)
    : undefined;
  if (certificate !== undefined) {
    return certificatePrincipal(certificate, security.certificateRules ?? []);
  }
  throw new Unauthenticated(
    `missing credential: ${credentials.hint}` + (security.certificateRules ? " or a client certificate" : ""),
  );
}

/** Step 2: the caller holds the operation's scope and may touch its twin (`PermissionDenied` otherwise). */
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
  security: CallSecurity | undefined,
  credentials: CallCredentials,
  policy: CallPolicy<Req>,
  request: Req,
): Caller {
  try {
    const caller = authenticate(security, credentials);
    authorizeCall(caller, policy, request);
    rateLimit(security, caller);
    return caller;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "UNAUTHENTICATED" || code === "PERMISSION_DENIED") security?.refused?.(code);
    throw error;
  }
}

/**
 * The client a call is admitted for (fairness): its principal when it authenticated (every
 * connection of one API key or certificate shares the key's share), else its connection.
 */
export function clientOf(peer: string, caller?: Caller): string {
  const principal = caller?.principal;
  return principal !== undefined && principal.kind !== "anonymous"
    ? principalLabel(principal)
    : `peer:${peer}`;
}

/**
 * Step 4, after the rate limit: admits one unit of `workClass` before any work is queued for it;
 * over the bound it throws `Throttled` (RESOURCE_EXHAUSTED with `retryAfterMs`). Release the
 * permit when the call is answered (a watch: when it ends). Without admission control: undefined.
 */
export function admitWork(
  admission: Admission | undefined,
  workClass: WorkClass,
  credentials: Pick<CallCredentials, "peer">,
  caller?: Caller,
): Permit | undefined {
  return admission?.admit(workClass, clientOf(credentials.peer, caller));
}
