/**
 * Turns what the Cassandra driver throws into Doppel's typed errors, so nothing untyped leaves
 * the store:
 * - the cluster cannot answer now (no host reachable, timeouts, not enough replicas, overloaded,
 *   bootstrapping, a write or read failure on replicas, connection busy or closed) -> `Unavailable`
 *   (retrying later may succeed; a timed-out write may or may not have been applied);
 * - authentication or authorisation refused -> `FailedPrecondition` (fix the configuration);
 * - a request the server rejects as malformed (syntax, invalid, unprepared...) -> `Internal`
 *   (a bug in the store, never the caller's input: all input is bound).
 *
 * Errors are recognised by the driver's error class names and response codes, so this module
 * does not need the driver and can be tested alone.
 */
import { DoppelError, FailedPrecondition, Internal, Unavailable } from "../../core/errors.ts";

/** Driver response error codes (native protocol), the ones this module distinguishes. */
export const ResponseCode = {
  serverError: 0x0000,
  badCredentials: 0x0100,
  unavailable: 0x1000,
  overloaded: 0x1001,
  isBootstrapping: 0x1002,
  truncateError: 0x1003,
  writeTimeout: 0x1100,
  readTimeout: 0x1200,
  readFailure: 0x1300,
  functionFailure: 0x1400,
  writeFailure: 0x1500,
  syntaxError: 0x2000,
  unauthorized: 0x2100,
  invalid: 0x2200,
  configError: 0x2300,
  alreadyExists: 0x2400,
  unprepared: 0x2500,
} as const;

const TRANSIENT_CODES = new Set<number>([
  ResponseCode.serverError,
  ResponseCode.unavailable,
  ResponseCode.overloaded,
  ResponseCode.isBootstrapping,
  ResponseCode.truncateError,
  ResponseCode.writeTimeout,
  ResponseCode.readTimeout,
  ResponseCode.readFailure,
  ResponseCode.writeFailure,
]);

const TRANSIENT_DRIVER_ERRORS = new Set([
  "NoHostAvailableError",
  "OperationTimedOutError",
  "BusyConnectionError",
  "DriverInternalError",
]);

interface DriverErrorLike {
  readonly name?: unknown;
  readonly code?: unknown;
  readonly message?: unknown;
}

/** What kind of failure a driver error is. */
export type FailureKind = "unavailable" | "refused" | "bug";

/** Classifies anything the driver threw (unknown errors count as `unavailable`: a socket error, a closed client). */
export function classify(error: unknown): FailureKind {
  const e = (error ?? {}) as DriverErrorLike;
  if (e.name === "AuthenticationError") return "refused";
  if (e.name === "ResponseError" && typeof e.code === "number") {
    if (TRANSIENT_CODES.has(e.code)) return "unavailable";
    if (e.code === ResponseCode.badCredentials || e.code === ResponseCode.unauthorized) return "refused";
    return "bug";
  }
  if (e.name === "ArgumentError" || e.name === "NotSupportedError" || e.name === "TypeError") return "bug";
  if (typeof e.name === "string" && TRANSIENT_DRIVER_ERRORS.has(e.name)) return "unavailable";
  return "unavailable";
}

/** True for the server's refusal of a multi-partition batch over `batch_size_fail_threshold`. */
export function isBatchTooLarge(error: unknown): boolean {
  const e = (error ?? {}) as DriverErrorLike;
  return (
    e.name === "ResponseError" &&
    e.code === ResponseCode.invalid &&
    typeof e.message === "string" &&
    /batch too large/i.test(e.message)
  );
}

/**
 * A one-line account of a driver error. "No host available" lists each host tried with its own
 * error's message (the driver's text would embed a stack trace).
 */
export function describeDriverError(error: unknown): string {
  const e = error as (DriverErrorLike & { innerErrors?: unknown }) | undefined;
  const inner = e?.innerErrors;
  if (e?.name === "NoHostAvailableError" && typeof inner === "object" && inner !== null) {
    const hosts = Object.entries(inner as Record<string, unknown>).map(
      ([host, cause]) => `${host}: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
    if (hosts.length > 0) return `no host could be reached (${hosts.join("; ")})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The typed error for a failed `operation` of the store labelled `label` (which names the
 * contact points). DoppelErrors pass through unchanged; the driver's error becomes the `cause`.
 */
export function toDoppelError(error: unknown, label: string, operation: string): DoppelError {
  if (error instanceof DoppelError) return error;
  const message = describeDriverError(error);
  const name = (error as DriverErrorLike | undefined)?.name;
  const details = { operation, driverError: typeof name === "string" ? name : "unknown" };
  switch (classify(error)) {
    case "unavailable":
      return new Unavailable(`${label}: ${operation} failed: ${message}`, details, { cause: error });
    case "refused":
      return new FailedPrecondition(`${label}: ${operation} refused by the cluster: ${message}`, details);
    case "bug":
      return new Internal(`${label}: ${operation} failed: ${message}`, details, { cause: error });
  }
}
