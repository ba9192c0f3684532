import { describe, expect, it } from "vitest";
import { ErrorCode, InvalidArgument } from "../../../runtime/core/errors.ts";
import {
  classify,
  isBatchTooLarge,
  ResponseCode,
  toDoppelError,
} from "../../../runtime/persistence/cassandra/failures.ts";

function driverError(name: string, message: string, code?: number): Error {
  const error = new Error(message) as Error & { code?: number };
  error.name = name;
  if (code !== undefined) error.code = code;
  return error;
}

describe("cassandra failures", () => {
  it("maps an unreachable or overloaded cluster to Unavailable, keeping the driver error as cause", () => {
    for (const error of [
      driverError("NoHostAvailableError", "All host(s) tried for query failed"),
      driverError("OperationTimedOutError", "timed out"),
      driverError(
        "ResponseError",
        "Operation timed out - received only 0 responses",
        ResponseCode.writeTimeout,
      ),
      driverError("ResponseError", "Cannot achieve consistency level", ResponseCode.unavailable),
      driverError("ResponseError", "overloaded", ResponseCode.overloaded),
      new Error("socket hang up"),
    ]) {
      expect(classify(error)).toBe("unavailable");
      const mapped = toDoppelError(error, "cassandra 127.0.0.1:19042", "commit");
      expect(mapped.code).toBe(ErrorCode.Unavailable);
      expect(mapped.message).toContain("cassandra 127.0.0.1:19042: commit failed");
      expect(mapped.cause).toBe(error);
    }
  });

  it("maps refused credentials to FailedPrecondition and malformed requests to Internal", () => {
    expect(toDoppelError(driverError("AuthenticationError", "bad"), "c", "open").code).toBe(
      ErrorCode.FailedPrecondition,
    );
    expect(toDoppelError(driverError("ResponseError", "no", ResponseCode.unauthorized), "c", "x").code).toBe(
      ErrorCode.FailedPrecondition,
    );
    expect(
      toDoppelError(driverError("ResponseError", "line 1", ResponseCode.syntaxError), "c", "x").code,
    ).toBe(ErrorCode.Internal);
  });

  it("describes an unreachable cluster host by host, without the driver's stack traces", () => {
    const error = driverError(
      "NoHostAvailableError",
      "All host(s) tried for query failed. First host tried...",
    ) as Error & {
      innerErrors?: unknown;
    };
    error.innerErrors = {
      "10.0.0.1:9042": new Error("connect ECONNREFUSED 10.0.0.1:9042"),
      "10.0.0.2:9042": "timeout",
    };
    expect(toDoppelError(error, "cassandra", "commit").message).toBe(
      "cassandra: commit failed: no host could be reached (10.0.0.1:9042: connect ECONNREFUSED 10.0.0.1:9042; 10.0.0.2:9042: timeout)",
    );
  });

  it("passes Doppel errors through and recognises an oversized batch", () => {
    const own = new InvalidArgument("bad token");
    expect(toDoppelError(own, "c", "x")).toBe(own);
    expect(isBatchTooLarge(driverError("ResponseError", "Batch too large", ResponseCode.invalid))).toBe(true);
    expect(isBatchTooLarge(driverError("ResponseError", "Unknown column", ResponseCode.invalid))).toBe(false);
  });
});
