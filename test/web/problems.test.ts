import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ErrorCode, ResourceExhausted } from "../../runtime/core/errors.ts";
import { STATUS_BY_CODE } from "../../runtime/grpc/status.ts";
import { HTTP_STATUS_BY_CODE, problemOf } from "../../runtime/web/problems.ts";

/** The HTTP statuses a gRPC status may become (Google's HTTP mapping; 409/412 split FAILED_PRECONDITION). */
const HTTP_FOR_GRPC: Partial<Record<grpc.status, readonly number[]>> = {
  [grpc.status.INVALID_ARGUMENT]: [400],
  [grpc.status.NOT_FOUND]: [404],
  [grpc.status.FAILED_PRECONDITION]: [409, 412],
  [grpc.status.ABORTED]: [409],
  [grpc.status.RESOURCE_EXHAUSTED]: [429],
  [grpc.status.UNAVAILABLE]: [503],
  [grpc.status.DEADLINE_EXCEEDED]: [504],
  [grpc.status.UNKNOWN]: [500],
  [grpc.status.INTERNAL]: [500],
  [grpc.status.UNAUTHENTICATED]: [401],
  [grpc.status.PERMISSION_DENIED]: [403],
};

describe("problem details", () => {
  it("give every error code the HTTP status its gRPC status means", () => {
    for (const code of Object.values(ErrorCode)) {
      expect(HTTP_FOR_GRPC[STATUS_BY_CODE[code]], code).toContain(HTTP_STATUS_BY_CODE[code]);
    }
  });

  it("carry Retry-After in seconds for a throttled call, and never leak an internal message", () => {
    const throttled = problemOf(new ResourceExhausted("slow down", { retryAfterMs: 1500 }));
    expect(throttled.status).toBe(429);
    expect(throttled.headers["retry-after"]).toBe("2");
    const internal = problemOf(new Error("secret path /etc/x"));
    expect(internal.status).toBe(500);
    expect(internal.body.detail).not.toContain("secret");
    expect(internal.body.details).toHaveProperty("incident");
  });
});
