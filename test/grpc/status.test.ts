import * as grpc from "@grpc/grpc-js";
import {
  CallCycle,
  ConcurrencyConflict,
  DeadlineExceeded,
  type DoppelError,
  ErrorCode,
  FailedPrecondition,
  HandlerFailed,
  Internal,
  InvalidArgument,
  NotFound,
  Quarantined,
  ResourceExhausted,
  Unavailable,
  VersionConflict,
} from "doppel";
import { describe, expect, it } from "vitest";
import {
  ERROR_CODE_KEY,
  ERROR_DETAILS_KEY,
  fromServiceError,
  STATUS_BY_CODE,
  toServiceError,
} from "../../runtime/grpc/status.ts";

/** The mapping documented at the top of proto/doppel/v1/twins.proto, written out independently. */
const DOCUMENTED: [DoppelError, grpc.status][] = [
  [new InvalidArgument("bad id", { field: "id" }), grpc.status.INVALID_ARGUMENT],
  [new NotFound("no such twin"), grpc.status.NOT_FOUND],
  [new VersionConflict(3, 5, "thermostat/t1"), grpc.status.FAILED_PRECONDITION],
  [new FailedPrecondition("pump is already running"), grpc.status.FAILED_PRECONDITION],
  [new CallCycle(["a/1", "b/2", "a/1"]), grpc.status.FAILED_PRECONDITION],
  [new Quarantined("quarantined"), grpc.status.FAILED_PRECONDITION],
  [new ConcurrencyConflict("two writers"), grpc.status.ABORTED],
  [new ResourceExhausted("mailbox full", { limit: 1000 }), grpc.status.RESOURCE_EXHAUSTED],
  [new Unavailable("store down"), grpc.status.UNAVAILABLE],
  [new DeadlineExceeded("too slow"), grpc.status.DEADLINE_EXCEEDED],
  [new HandlerFailed("handler threw: boom"), grpc.status.UNKNOWN],
];

describe("status mapping", () => {
  it("maps every error code to a gRPC status", () => {
    expect(Object.keys(STATUS_BY_CODE).sort()).toEqual(Object.values(ErrorCode).sort());
  });

  it.each(DOCUMENTED.map(([error, status]) => [error.code, grpc.status[status], error, status] as const))(
    "sends %s as %s with the Doppel code in the trailers, and the client rebuilds the same class",
    (_code, _name, error, status) => {
      const sent = toServiceError(error);
      expect(sent.code).toBe(status);
      expect(sent.details).toBe(error.message);
      expect(sent.metadata.get(ERROR_CODE_KEY)).toEqual([error.code]);
      const back = fromServiceError(sent);
      expect(back).toBeInstanceOf(error.constructor);
      expect(back.code).toBe(error.code);
      expect(back.message).toBe(error.message);
      expect(back.details).toEqual(error.details);
    },
  );

  it("carries non-ASCII messages and details (metadata values must be ASCII)", () => {
    const sent = toServiceError(new CallCycle(["thermostat/é", "valve/ü"]));
    const encoded = sent.metadata.get(ERROR_DETAILS_KEY)[0];
    expect(encoded).toMatch(/^[\x20-\x7e]+$/);
    const back = fromServiceError(sent);
    expect(back).toBeInstanceOf(CallCycle);
    expect(back.details).toEqual({ chain: ["thermostat/é", "valve/ü"] });
    expect(back.message).toContain("→");
  });

  it("hides an unexpected error behind a generic INTERNAL with an incident id", () => {
    const sent = toServiceError(new TypeError("cannot read properties of undefined (reading 'secret')"));
    expect(sent.code).toBe(grpc.status.INTERNAL);
    expect(sent.details).not.toContain("secret");
    expect(sent.wire.details?.["incident"]).toMatch(/^[0-9a-f-]{36}$/);
    const back = fromServiceError(sent);
    expect(back).toBeInstanceOf(Internal);
    expect(back.details?.["incident"]).toBe(sent.wire.details?.["incident"]);
  });

  it("hides the message of a Doppel Internal error too", () => {
    expect(toServiceError(new Internal("invariant broken at shard 7")).details).not.toContain("shard 7");
  });

  it("drops details too large for a trailer", () => {
    const sent = toServiceError(new InvalidArgument("big", { blob: "x".repeat(10_000) }));
    expect(fromServiceError(sent).details).toEqual({ truncated: true });
  });

  it.each([
    [grpc.status.UNAVAILABLE, Unavailable],
    [grpc.status.DEADLINE_EXCEEDED, DeadlineExceeded],
    [grpc.status.RESOURCE_EXHAUSTED, ResourceExhausted],
    [grpc.status.CANCELLED, Unavailable],
    [grpc.status.UNIMPLEMENTED, Internal],
    [grpc.status.UNKNOWN, Internal],
  ])("falls back on the status when the trailers carry no Doppel code (%s)", (code, cls) => {
    const error = fromServiceError({ code, details: "connection dropped", metadata: new grpc.Metadata() });
    expect(error).toBeInstanceOf(cls);
    expect(error.message).toBe("connection dropped");
    expect(error.details).toEqual({ grpcStatus: grpc.status[code] });
  });

  it("ignores malformed details and unknown codes instead of failing", () => {
    const metadata = new grpc.Metadata();
    metadata.set(ERROR_CODE_KEY, "SOMETHING_NEW");
    metadata.set(ERROR_DETAILS_KEY, "{not json");
    const error = fromServiceError({
      code: grpc.status.FAILED_PRECONDITION,
      details: "later version",
      metadata,
    });
    expect(error).toBeInstanceOf(Internal);
    expect(error.details).toBeUndefined();
  });

  it("wraps something that is not a gRPC error as Internal", () => {
    expect(fromServiceError("boom")).toBeInstanceOf(Internal);
    const doppel = new NotFound("x");
    expect(fromServiceError(doppel)).toBe(doppel);
  });
});
