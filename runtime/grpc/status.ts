/**
 * Doppel errors ↔ gRPC statuses: the one table mapping every {@link ErrorCode} to a status (as the
 * header of `proto/doppel/v1/twins.proto` documents it), the server-side encoding of an error
 * (status, message, trailing metadata `doppel-error-code` and `doppel-error-details`), and the
 * client-side decoding back into the matching {@link DoppelError} subclass.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { DoppelError, ErrorCode, type ErrorDetails, type WireError } from "../core/errors.ts";
import { present } from "../core/present.ts";
import type { Logger } from "../observability/logger.ts";

/** Trailing metadata key carrying the stable Doppel error code (`VERSION_CONFLICT`...). */
export const ERROR_CODE_KEY = "doppel-error-code";
/** Trailing metadata key carrying the error's details as JSON (only when there are details). */
export const ERROR_DETAILS_KEY = "doppel-error-details";
/** Trailing metadata key of a RESOURCE_EXHAUSTED answer: milliseconds to wait before retrying. */
export const RETRY_AFTER_KEY = "retry-after-ms";

/** The gRPC status of each Doppel error code. The only place this mapping is written down. */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, grpc.status>> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  VERSION_CONFLICT: grpc.status.FAILED_PRECONDITION,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  CALL_CYCLE: grpc.status.FAILED_PRECONDITION,
  QUARANTINED: grpc.status.FAILED_PRECONDITION,
  CONCURRENCY_CONFLICT: grpc.status.ABORTED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  QUOTA_EXCEEDED: grpc.status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  HANDLER_FAILED: grpc.status.UNKNOWN,
  INTERNAL: grpc.status.INTERNAL,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
};

/**
 * The Doppel code assumed for a status that arrives without `doppel-error-code` (the call failed
 * in grpc-js, the network or a proxy, not in Doppel). Statuses not listed become `INTERNAL`.
 */
const CODE_BY_BARE_STATUS: Readonly<Partial<Record<grpc.status, ErrorCode>>> = {
  [grpc.status.CANCELLED]: ErrorCode.Unavailable,
  [grpc.status.INVALID_ARGUMENT]: ErrorCode.InvalidArgument,
  [grpc.status.OUT_OF_RANGE]: ErrorCode.InvalidArgument,
  [grpc.status.NOT_FOUND]: ErrorCode.NotFound,
  [grpc.status.FAILED_PRECONDITION]: ErrorCode.FailedPrecondition,
  [grpc.status.ALREADY_EXISTS]: ErrorCode.FailedPrecondition,
  [grpc.status.ABORTED]: ErrorCode.ConcurrencyConflict,
  [grpc.status.RESOURCE_EXHAUSTED]: ErrorCode.ResourceExhausted,
  [grpc.status.UNAVAILABLE]: ErrorCode.Unavailable,
  [grpc.status.DEADLINE_EXCEEDED]: ErrorCode.DeadlineExceeded,
  [grpc.status.UNAUTHENTICATED]: ErrorCode.Unauthenticated,
  [grpc.status.PERMISSION_DENIED]: ErrorCode.PermissionDenied,
};

/** Statuses that point at the server or its dependencies rather than at the request: logged at warn. */
const SERVER_FAULTS: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
  grpc.status.DATA_LOSS,
  grpc.status.UNAVAILABLE,
  grpc.status.ABORTED,
]);

/** Longest status message sent; longer ones are cut (they travel in an HTTP/2 trailer). */
const MAX_MESSAGE_CHARS = 2000;
/** Largest encoded details sent; larger details are replaced by `{ truncated: true }`. */
const MAX_DETAILS_BYTES = 4096;

/** True when a failed call with this status deserves an operator's attention (warn, not debug). */
export function isServerFault(code: grpc.status): boolean {
  return SERVER_FAULTS.has(code);
}

/** The name of a gRPC status (`"FAILED_PRECONDITION"`), for logs and messages. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? `STATUS_${code}`;
}

/** A gRPC error as the gateway sends it, with the Doppel error it encodes. */
export interface DoppelServiceError extends grpc.ServiceError {
  /** What the client will rebuild (for internal errors: the generic message, not the real one). */
  readonly wire: WireError;
}

/** JSON with every character outside printable ASCII escaped: gRPC metadata values must be ASCII. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[^\x20-\x7e]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function encodeDetails(details: ErrorDetails): string {
  try {
    const text = asciiJson(details);
    return text.length <= MAX_DETAILS_BYTES ? text : asciiJson({ truncated: true });
  } catch {
    // Details that are not JSON (a cycle, a BigInt) are a bug of whoever raised the error.
    return asciiJson({ truncated: true });
  }
}

/**
 * Encodes anything thrown by a handler as a gRPC error: the status from {@link STATUS_BY_CODE},
 * the error's message, and the trailing metadata. Errors that are not a {@link DoppelError} and
 * Doppel `INTERNAL` errors become `INTERNAL` with a generic message and an `incident` id in the
 * details; the caller logs the real error next to that id. Never throws.
 */
export function toServiceError(error: unknown): DoppelServiceError {
  const doppel = error instanceof DoppelError ? error : undefined;
  let wire: WireError;
  if (doppel === undefined || doppel.code === ErrorCode.Internal) {
    wire = {
      code: ErrorCode.Internal,
      message: "internal error (the server logged the cause under this incident id)",
      details: { incident: randomUUID() },
    };
  } else {
    const message =
      doppel.message.length > MAX_MESSAGE_CHARS
        ? `${doppel.message.slice(0, MAX_MESSAGE_CHARS)}…`
        : doppel.message;
    wire = doppel.details === undefined ? { code: doppel.code, message } : { ...doppel.toWire(), message };
  }
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, wire.code);
  if (wire.details !== undefined) metadata.set(ERROR_DETAILS_KEY, encodeDetails(wire.details));
  const retryAfterMs = wire.details?.["retryAfterMs"];
  if (typeof retryAfterMs === "number" && Number.isFinite(retryAfterMs) && retryAfterMs >= 0)
    metadata.set(RETRY_AFTER_KEY, String(Math.ceil(retryAfterMs)));
  const code = STATUS_BY_CODE[wire.code];
  return Object.assign(new Error(`${statusName(code)}: ${wire.message}`), {
    code,
    details: wire.message,
    metadata,
    wire,
  });
}

function firstString(metadata: grpc.Metadata | undefined, key: string): string | undefined {
  const value = metadata?.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

function parseDetails(text: string | undefined): ErrorDetails | undefined {
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as ErrorDetails)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The parts of a failed call's status that {@link fromServiceError} reads. */
export interface StatusLike {
  readonly code: grpc.status;
  readonly details?: string;
  readonly metadata?: grpc.Metadata;
}

/**
 * Rebuilds the {@link DoppelError} a failed call carries: the subclass named by
 * `doppel-error-code` with the status message and the `doppel-error-details`. Without that
 * metadata (the failure came from the transport, not from Doppel), the status decides: UNAVAILABLE
 * → `Unavailable`, DEADLINE_EXCEEDED → `DeadlineExceeded`, and so on; anything unmapped → `Internal`.
 * Never throws; anything that is not a gRPC status becomes `Internal` via {@link DoppelError.from}.
 */
export function fromServiceError(error: unknown): DoppelError {
  if (error instanceof DoppelError) return error;
  if (typeof error !== "object" || error === null || typeof (error as StatusLike).code !== "number") {
    return DoppelError.from(error);
  }
  const status = error as StatusLike;
  const message = status.details || statusName(status.code);
  const code = firstString(status.metadata, ERROR_CODE_KEY);
  const details = parseDetails(firstString(status.metadata, ERROR_DETAILS_KEY));
  if (code !== undefined) {
    return DoppelError.fromWire(
      details === undefined
        ? { code: code as ErrorCode, message }
        : { code: code as ErrorCode, message, details },
    );
  }
  const bare = CODE_BY_BARE_STATUS[status.code] ?? ErrorCode.Internal;
  return DoppelError.fromWire({ code: bare, message, details: { grpcStatus: statusName(status.code) } });
}

/**
 * Encodes a handler's failure as a gRPC error and logs it with the method name: at warn for
 * server-side faults (INTERNAL, UNKNOWN, UNAVAILABLE, ABORTED, DATA_LOSS, with the real cause),
 * at debug for what the request did wrong.
 */
export function failure(logger: Logger, method: string, error: unknown): DoppelServiceError {
  const serviceError = toServiceError(error);
  const fields = {
    method,
    status: statusName(serviceError.code),
    code: serviceError.wire.code,
    ...present({ details: serviceError.wire.details }),
  };
  if (isServerFault(serviceError.code)) logger.warn({ ...fields, err: error }, "gRPC call failed");
  else logger.debug({ ...fields, message: serviceError.wire.message }, "gRPC call failed");
  return serviceError;
}
