/**
 * Errors that cross Doppel's boundaries. Every error has a stable `code` (part of the public
 * contract: clients branch on it), a readable message, and optional JSON `details`. Errors cross the
 * wire as `{ code, message, details }` and are rebuilt with {@link DoppelError.fromWire}.
 */

import { TransportError, type TransportFailure } from "../../cluster/transport/transport.ts";

/** The stable error codes. The gateway maps each one to a gRPC status (see `runtime/grpc/status.ts`). */
export const ErrorCode = {
  InvalidArgument: "INVALID_ARGUMENT",
  NotFound: "NOT_FOUND",
  VersionConflict: "VERSION_CONFLICT",
  FailedPrecondition: "FAILED_PRECONDITION",
  CallCycle: "CALL_CYCLE",
  ConcurrencyConflict: "CONCURRENCY_CONFLICT",
  Quarantined: "QUARANTINED",
  Unavailable: "UNAVAILABLE",
  DeadlineExceeded: "DEADLINE_EXCEEDED",
  ResourceExhausted: "RESOURCE_EXHAUSTED",
  QuotaExceeded: "QUOTA_EXCEEDED",
  HandlerFailed: "HANDLER_FAILED",
  Internal: "INTERNAL",
  Unauthenticated: "UNAUTHENTICATED",
  PermissionDenied: "PERMISSION_DENIED",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** JSON-safe extra facts about an error (field names, versions, limits). */
export type ErrorDetails = Readonly<Record<string, unknown>>;

/** The wire form of an error: what a client receives. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: ErrorDetails;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/**
 * Whether an operation that failed may be tried again, decided by {@link retryabilityOf} alone:
 * - `"safe"`: it failed before doing anything (e.g. it reached a node that does not own the twin,
 *   `details.retry = "not-owner"`): retry at once; the router does so by itself.
 * - `"later"`: a dependency is down, slow or full (`UNAVAILABLE`, `DEADLINE_EXCEEDED`,
 *   `RESOURCE_EXHAUSTED`): retrying after a pause may succeed, but the first attempt may have
 *   taken effect (`details.retry = "outcome-unknown"` says so outright); give writes a message id
 *   or an expected version so a retry cannot apply twice.
 * - `"never"`: the request is wrong, refused by a rule, or hit a bug: sent again it fails again.
 */
export type Retryability = "safe" | "later" | "never";

/** Why a retryable error may be retried, in `details.retry`. */
export type RetryReason = "not-owner" | "outcome-unknown";

const TRANSIENT_CODES = new Set<string>([
  ErrorCode.Unavailable,
  ErrorCode.DeadlineExceeded,
  ErrorCode.ResourceExhausted,
]);

/**
 * How an error may be retried: the one place that decides it. Takes a {@link DoppelError}, a
 * {@link WireError} or anything thrown (which is not retryable unless {@link DoppelError.from}
 * maps it to a transient code, as it does for an unreachable cluster store).
 */
export function retryabilityOf(error: unknown): Retryability {
  const { code, details } =
    typeof error === "object" && error !== null && KNOWN_CODES.has(String((error as WireError).code))
      ? (error as WireError)
      : DoppelError.from(error);
  if (!TRANSIENT_CODES.has(code)) return "never";
  return code === ErrorCode.Unavailable && details?.["retry"] === "not-owner" ? "safe" : "later";
}

/** Base class of every error Doppel raises on purpose. */
export class DoppelError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails | undefined;

  constructor(code: ErrorCode, message: string, details?: ErrorDetails, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }

  /** How this failure may be retried (see {@link retryabilityOf}). */
  get retryability(): Retryability {
    return retryabilityOf(this);
  }

  /** True when trying again (now or after a pause) may succeed: `retryability` is not `"never"`. */
  get retryable(): boolean {
    return this.retryability !== "never";
  }

  /** The form sent over the wire (gRPC trailers, NATS replies). */
  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /** Rebuilds a wire error as the matching subclass, so `instanceof` works across nodes. */
  static fromWire(wire: WireError): DoppelError {
    const code = KNOWN_CODES.has(wire.code) ? wire.code : ErrorCode.Internal;
    const make = SUBCLASS_BY_CODE[code];
    return make(wire.message, wire.details);
  }

  /**
   * Wraps anything thrown into a DoppelError; DoppelErrors pass through unchanged. Errors of
   * `cluster/` (which imports nothing from runtime/) get their code here: see {@link fromCluster}.
   */
  static from(error: unknown): DoppelError {
    if (error instanceof DoppelError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return fromCluster(error, message) ?? new Internal(message, undefined, { cause: error });
  }
}

/** The request is malformed regardless of system state: bad id, bad JSON, failed validation, too large. */
export class InvalidArgument extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.InvalidArgument, message, details);
  }
}

/** The twin, twin type, command or page does not exist. */
export class NotFound extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.NotFound, message, details);
  }
}

/** A write carried an expected version that is not the twin's current version (optimistic concurrency). */
export class VersionConflict extends DoppelError {
  constructor(
    readonly expected: number,
    readonly actual: number,
    subject: string,
  ) {
    super(ErrorCode.VersionConflict, `${subject}: expected version ${expected}, but it is at ${actual}`, {
      expected,
      actual,
    });
  }
}

/**
 * A twin refused a command because of its state (a business rule). Twin authors throw this from
 * handlers: `throw new FailedPrecondition("pump is already running")`.
 */
export class FailedPrecondition extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.FailedPrecondition, message, details);
  }
}

/** A twin-to-twin call would re-enter a twin already waiting in the same call chain. */
export class CallCycle extends DoppelError {
  constructor(readonly chain: readonly string[]) {
    super(
      ErrorCode.CallCycle,
      `call cycle: ${chain.join(" → ")} (a twin cannot be re-entered while it waits)`,
      {
        chain: [...chain],
      },
    );
  }
}

/** Two writers appended at the same position of one twin's event log; nothing was merged. */
export class ConcurrencyConflict extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.ConcurrencyConflict, message, details);
  }
}

/** The twin was quarantined after a concurrency conflict and refuses work until an operator acts. */
export class Quarantined extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.Quarantined, message, details);
  }
}

/** A dependency (store, transport, owner node) cannot be reached now; retrying later may succeed. */
export class Unavailable extends DoppelError {
  constructor(message: string, details?: ErrorDetails, options?: ErrorOptions) {
    super(ErrorCode.Unavailable, message, details, options);
  }
}

/** The caller's deadline passed before the answer came. The operation may still complete. */
export class DeadlineExceeded extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.DeadlineExceeded, message, details);
  }
}

/** A bounded resource is full (a twin's mailbox, the node's in-flight work); back off and retry. */
export class ResourceExhausted extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.ResourceExhausted, message, details);
  }
}

/**
 * A principal is over a quota that does not refill by itself: an API key that has created as many
 * twins as its `maxTwins` allows. `details`: `quota` (its name, `"maxTwins"`), `principal`,
 * `limit` and `used`. Not retryable: the same request fails again until the quota is raised.
 */
export class QuotaExceeded extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.QuotaExceeded, message, details);
  }
}

/** A twin's handler threw an ordinary error; the twin's state is unchanged and it keeps serving. */
export class HandlerFailed extends DoppelError {
  constructor(message: string, details?: ErrorDetails, options?: ErrorOptions) {
    super(ErrorCode.HandlerFailed, message, details, options);
  }
}

/** A bug or broken invariant inside Doppel. */
export class Internal extends DoppelError {
  constructor(message: string, details?: ErrorDetails, options?: ErrorOptions) {
    super(ErrorCode.Internal, message, details, options);
  }
}

/** The request carries no credential, or one that is unknown, malformed, expired or revoked. */
export class Unauthenticated extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.Unauthenticated, message, details);
  }
}

/** The caller is authenticated but may not do this (a scope it lacks, a twin type or id it may not touch). */
export class PermissionDenied extends DoppelError {
  constructor(message: string, details?: ErrorDetails) {
    super(ErrorCode.PermissionDenied, message, details);
  }
}

const SUBCLASS_BY_CODE: Record<ErrorCode, (message: string, details?: ErrorDetails) => DoppelError> = {
  INVALID_ARGUMENT: (m, d) => new InvalidArgument(m, d),
  NOT_FOUND: (m, d) => new NotFound(m, d),
  VERSION_CONFLICT: (m, d) => {
    const e = new VersionConflict(Number(d?.["expected"] ?? -1), Number(d?.["actual"] ?? -1), "twin");
    e.message = m;
    return e;
  },
  FAILED_PRECONDITION: (m, d) => new FailedPrecondition(m, d),
  CALL_CYCLE: (m, d) => {
    const chain = Array.isArray(d?.["chain"]) ? (d["chain"] as unknown[]).map(String) : [];
    const e = new CallCycle(chain);
    e.message = m;
    return e;
  },
  CONCURRENCY_CONFLICT: (m, d) => new ConcurrencyConflict(m, d),
  QUARANTINED: (m, d) => new Quarantined(m, d),
  UNAVAILABLE: (m, d) => new Unavailable(m, d),
  DEADLINE_EXCEEDED: (m, d) => new DeadlineExceeded(m, d),
  RESOURCE_EXHAUSTED: (m, d) => new ResourceExhausted(m, d),
  QUOTA_EXCEEDED: (m, d) => new QuotaExceeded(m, d),
  HANDLER_FAILED: (m, d) => new HandlerFailed(m, d),
  INTERNAL: (m, d) => new Internal(m, d),
  UNAUTHENTICATED: (m, d) => new Unauthenticated(m, d),
  PERMISSION_DENIED: (m, d) => new PermissionDenied(m, d),
};

/**
 * What the errors of `cluster/` mean to a caller. They carry a stable `code` of their own
 * (cluster/ never imports runtime/, and the Redis client must not load for this table to exist);
 * a transport failure is told by its `failure`.
 */
const CLUSTER_CODES: Record<string, (message: string, cause: unknown) => DoppelError> = {
  // Joining would misplace every twin: the configuration must change first.
  SHARD_COUNT_MISMATCH: (m) => new FailedPrecondition(m),
  // Another live node has this id: pick another, or wait until it is declared dead.
  NODE_ID_IN_USE: (m) => new FailedPrecondition(m),
  LEASE_LOST: (m) => new Unavailable(m, { retry: "not-owner" }),
  REDIS_UNAVAILABLE: (m, cause) => new Unavailable(m, undefined, { cause }),
  STORE_UNAVAILABLE: (m, cause) => new Unavailable(m, undefined, { cause }),
  // A membership call out of order (join twice, update before join) is a bug here.
  MEMBERSHIP_STATE: (m, cause) => new Internal(m, undefined, { cause }),
};

const TRANSPORT_FAILURES: Record<TransportFailure, (message: string) => DoppelError> = {
  timeout: (m) => new DeadlineExceeded(m),
  "no-responders": (m) => new Unavailable(m),
  closed: (m) => new Unavailable(m),
  "bad-subject": (m) => new InvalidArgument(m),
  rejected: (m) => new FailedPrecondition(m),
};

function fromCluster(error: unknown, message: string): DoppelError | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && Object.hasOwn(CLUSTER_CODES, code))
    return CLUSTER_CODES[code]!(message, error);
  if (error instanceof TransportError) return TRANSPORT_FAILURES[error.failure](message);
  return undefined;
}
