import { describe, expect, it } from "vitest";
import { LeaseLost } from "../../cluster/leases/errors.ts";
import { MemoryLeaseStore } from "../../cluster/leases/memory.ts";
import { MembershipStateError, NodeIdInUse, ShardCountMismatch } from "../../cluster/membership/errors.ts";
import { TransportError } from "../../cluster/transport/transport.ts";
import {
  DeadlineExceeded,
  DoppelError,
  FailedPrecondition,
  HandlerFailed,
  InvalidArgument,
  NotFound,
  ResourceExhausted,
  retryabilityOf,
  Unavailable,
  VersionConflict,
} from "../../runtime/core/errors.ts";
import { notOwner, outcomeUnknown } from "../../runtime/routing/protocol.ts";
import { acquireOne } from "../cluster/lease-store-contract.ts";

describe("retryability, decided in one place", () => {
  it("is safe for a refusal before any work, later for transient failures, never otherwise", () => {
    expect(notOwner(3, "n1").retryability).toBe("safe");
    expect(outcomeUnknown("n1", "invoke").retryability).toBe("later");
    expect(new Unavailable("store down").retryability).toBe("later");
    expect(new DeadlineExceeded("slow").retryability).toBe("later");
    expect(new ResourceExhausted("full").retryability).toBe("later");
    for (const error of [
      new InvalidArgument("bad"),
      new NotFound("none"),
      new FailedPrecondition("rule"),
      new VersionConflict(1, 2, "t/1"),
      new HandlerFailed("boom"),
      DoppelError.from(new Error("a bug")),
    ]) {
      expect(error.retryability, error.code).toBe("never");
      expect(error.retryable).toBe(false);
    }
    expect(new Unavailable("x").retryable).toBe(true);
  });

  it("judges wire errors (as they arrive from another node) the same way as local ones", () => {
    const wire = notOwner(1, "n2").toWire();
    expect(retryabilityOf(wire)).toBe("safe");
    expect(retryabilityOf(DoppelError.fromWire(wire))).toBe("safe");
    expect(retryabilityOf({ code: "UNAVAILABLE", message: "m" })).toBe("later");
    expect(retryabilityOf({ code: "NOT_FOUND", message: "m" })).toBe("never");
    // Anything else thrown is a bug unless it is a known cluster failure.
    expect(retryabilityOf(new TypeError("x is undefined"))).toBe("never");
    expect(retryabilityOf(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }))).toBe("never");
    expect(retryabilityOf("a string")).toBe("never");
  });
});

describe("cluster errors get proper codes", () => {
  it("maps a shard count mismatch and a node id in use to FAILED_PRECONDITION, keeping the message", () => {
    const mismatch = DoppelError.from(new ShardCountMismatch("prod", 256, 64));
    expect(mismatch).toBeInstanceOf(FailedPrecondition);
    expect(mismatch.message).toBe('cluster "prod" has 256 shards; this node is configured with 64');
    const inUse = DoppelError.from(new NodeIdInUse("prod", "node-1", 120));
    expect(inUse.code).toBe("FAILED_PRECONDITION");
    expect(inUse.message).toContain('node id "node-1" is already live in cluster "prod"');
    expect(inUse.retryable).toBe(false);
  });

  it("maps a lost lease to a safe retry and an unreachable store to UNAVAILABLE", async () => {
    expect(DoppelError.from(new LeaseLost(7, "taken")).retryability).toBe("safe");
    const store = new MemoryLeaseStore();
    store.available = false;
    const failure = await acquireOne(store, 1, "n1", 1000).catch((error: unknown) => DoppelError.from(error));
    expect(failure).toBeInstanceOf(Unavailable);
    expect(DoppelError.from(new MembershipStateError("not joined")).code).toBe("INTERNAL");
  });

  it("maps transport failures by kind", () => {
    const of = (failure: TransportError["failure"]) =>
      DoppelError.from(new TransportError(failure, "m")).code;
    expect(of("timeout")).toBe("DEADLINE_EXCEEDED");
    expect(of("no-responders")).toBe("UNAVAILABLE");
    expect(of("closed")).toBe("UNAVAILABLE");
    expect(of("bad-subject")).toBe("INVALID_ARGUMENT");
    expect(of("rejected")).toBe("FAILED_PRECONDITION");
  });
});
