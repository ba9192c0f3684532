/**
 * Doppel errors as RFC 9457 problem details (`application/problem+json`): the HTTP status of each
 * stable error code — chosen to say what the gRPC status of `runtime/grpc/status.ts` says, in
 * HTTP's words — and the body: `type` (a URN naming the code), `title`, `status`, `detail` (the
 * error's message), `code` and `details`. A refusal that may pass (RESOURCE_EXHAUSTED with a retry
 * hint, UNAVAILABLE) carries `Retry-After` in seconds. Internal errors never leak their message: the
 * client gets an incident id that the server logs next to the real cause.
 */
import { randomUUID } from "node:crypto";
import { DoppelError, ErrorCode, type ErrorDetails } from "../core/errors.ts";
import type { Logger } from "../observability/logger.ts";

/** The HTTP status of each Doppel error code. */
export const HTTP_STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  // A business rule or the twin's state refuses it: the request conflicts with the resource.
  FAILED_PRECONDITION: 409,
  CALL_CYCLE: 409,
  QUARANTINED: 409,
  CONCURRENCY_CONFLICT: 409,
  // `If-Match` (or an expected version) named another version than the twin's.
  VERSION_CONFLICT: 412,
  RESOURCE_EXHAUSTED: 429,
  // A quota used up (no Retry-After: it does not refill by itself).
  QUOTA_EXCEEDED: 429,
  HANDLER_FAILED: 500,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

const TITLES: Readonly<Record<ErrorCode, string>> = {
  INVALID_ARGUMENT: "Invalid argument",
  UNAUTHENTICATED: "Unauthenticated",
  PERMISSION_DENIED: "Permission denied",
  NOT_FOUND: "Not found",
  FAILED_PRECONDITION: "Failed precondition",
  CALL_CYCLE: "Call cycle",
  QUARANTINED: "Twin quarantined",
  CONCURRENCY_CONFLICT: "Concurrency conflict",
  VERSION_CONFLICT: "Version conflict",
  RESOURCE_EXHAUSTED: "Resource exhausted",
  QUOTA_EXCEEDED: "Quota exceeded",
  HANDLER_FAILED: "Handler failed",
  INTERNAL: "Internal error",
  UNAVAILABLE: "Unavailable",
  DEADLINE_EXCEEDED: "Deadline exceeded",
};

/** The media type of problem details. */
export const PROBLEM_JSON = "application/problem+json";
/** Longest `detail` sent. */
const MAX_DETAIL_CHARS = 2000;
/** Largest `details` sent (as JSON); larger: `{ truncated: true }`. */
const MAX_DETAILS_BYTES = 4096;
/** Retry-After when a transient refusal gives no hint of its own, seconds. */
const DEFAULT_RETRY_AFTER_S = 1;

/** A problem details body. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: ErrorCode;
  readonly details?: ErrorDetails;
  readonly instance?: string;
}

/** What to answer: the status, the body and extra headers (`Retry-After`). */
export interface ProblemReply {
  readonly status: number;
  readonly body: Problem;
  readonly headers: Readonly<Record<string, string>>;
}

function boundedDetails(details: ErrorDetails): ErrorDetails {
  try {
    return JSON.stringify(details).length <= MAX_DETAILS_BYTES ? details : { truncated: true };
  } catch {
    return { truncated: true };
  }
}

/**
 * The problem for anything thrown. `status` overrides the code's status where HTTP has a more
 * precise word for the same code (413 for a body too large, 415 for a media type). Never throws.
 */
export function problemOf(error: unknown, status?: number): ProblemReply {
  const doppel = error instanceof DoppelError ? error : undefined;
  let code: ErrorCode;
  let detail: string;
  let details: ErrorDetails | undefined;
  if (doppel === undefined || doppel.code === ErrorCode.Internal) {
    code = ErrorCode.Internal;
    detail = "internal error (the server logged the cause under this incident id)";
    details = { incident: randomUUID() };
  } else {
    code = doppel.code;
    detail =
      doppel.message.length > MAX_DETAIL_CHARS
        ? `${doppel.message.slice(0, MAX_DETAIL_CHARS)}…`
        : doppel.message;
    details = doppel.details === undefined ? undefined : boundedDetails(doppel.details);
  }
  const httpStatus = status ?? HTTP_STATUS_BY_CODE[code];
  const headers: Record<string, string> = {};
  if (code === ErrorCode.ResourceExhausted || code === ErrorCode.Unavailable) {
    const hint = details?.["retryAfterMs"];
    const seconds =
      typeof hint === "number" && Number.isFinite(hint) && hint >= 0
        ? Math.max(1, Math.ceil(hint / 1000))
        : DEFAULT_RETRY_AFTER_S;
    headers["retry-after"] = String(seconds);
  }
  return {
    status: httpStatus,
    headers,
    body: {
      type: `urn:doppel:error:${code}`,
      title: TITLES[code],
      status: httpStatus,
      detail,
      code,
      ...(details === undefined ? {} : { details }),
    },
  };
}

/**
 * The problem for a failed request, logged: at warn for the server's own faults (5xx, with the
 * real cause and the incident id), at debug for what the request did wrong.
 */
export function failedRequest(logger: Logger, route: string, error: unknown, status?: number): ProblemReply {
  const reply = problemOf(error, status);
  const fields = { route, status: reply.status, code: reply.body.code, details: reply.body.details };
  if (reply.status >= 500) logger.warn({ ...fields, err: error }, "HTTP request failed");
  else logger.debug({ ...fields, message: reply.body.detail }, "HTTP request failed");
  return reply;
}
