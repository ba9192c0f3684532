import { describe, expect, it } from "vitest";
import {
  Admission,
  MAX_RETRY_AFTER_MS,
  MIN_RETRY_AFTER_MS,
  Throttled,
} from "../../runtime/core/admission.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import { ErrorCode } from "../../runtime/core/errors.ts";

const limits = {
  grpc: { maxInFlight: 4, maxInFlightPerClient: 3 },
  device: { maxInFlight: 8, maxInFlightPerClient: 2 },
  node: { maxInFlight: 2, maxInFlightPerClient: 2 },
  watch: { maxInFlight: 2, maxInFlightPerClient: 1 },
};

function admitted(result: ReturnType<Admission["tryAdmit"]>) {
  if (!result.ok) throw new Error(`refused: ${result.reason}`);
  return result.permit;
}

describe("admission", () => {
  it("admits up to the node-wide bound of a class and refuses beyond it, until a permit is released", () => {
    const admission = new Admission(new ManualClock(), limits);
    const permits = ["a", "b", "c", "d"].map((client) => admitted(admission.tryAdmit("grpc", client)));
    const refused = admission.tryAdmit("grpc", "e");
    expect(refused).toMatchObject({ ok: false, reason: "node", limit: 4 });
    expect(admission.stats("grpc")).toMatchObject({ admitted: 4, refused: 1, inFlight: 4, clients: 4 });
    permits[0]!.release();
    expect(admission.tryAdmit("grpc", "e").ok).toBe(true);
  });

  it("keeps classes apart: a full class does not refuse another", () => {
    const admission = new Admission(new ManualClock(), limits);
    admitted(admission.tryAdmit("node", "n1"));
    admitted(admission.tryAdmit("node", "n1"));
    expect(admission.tryAdmit("node", "n2").ok).toBe(false);
    expect(admission.tryAdmit("grpc", "n2").ok).toBe(true);
    expect(admission.tryAdmit("device", "n2").ok).toBe(true);
  });

  it("bounds each client, so another client is still admitted", () => {
    const admission = new Admission(new ManualClock(), limits);
    admitted(admission.tryAdmit("device", "thermostat/t1"));
    admitted(admission.tryAdmit("device", "thermostat/t1"));
    expect(admission.tryAdmit("device", "thermostat/t1")).toMatchObject({
      ok: false,
      reason: "client",
      limit: 2,
    });
    expect(admission.tryAdmit("device", "thermostat/t2").ok).toBe(true);
  });

  it("when congested, refuses a client that holds its fair share and admits one that holds less", () => {
    const admission = new Admission(new ManualClock(), {
      ...limits,
      grpc: { maxInFlight: 8, maxInFlightPerClient: 8 },
    });
    // One busy client alone may take up to the congestion point and beyond (its share is the whole bound).
    for (let i = 0; i < 5; i++) admitted(admission.tryAdmit("grpc", "busy"));
    admitted(admission.tryAdmit("grpc", "quiet")); // 6 in flight: congested; quiet holds 0 < ceil(8 / 2)
    // Two clients: the fair share is 4 each; busy holds 5.
    expect(admission.tryAdmit("grpc", "busy")).toMatchObject({ ok: false, reason: "fair-share", limit: 4 });
    expect(admission.tryAdmit("grpc", "quiet").ok).toBe(true);
  });

  it("a released permit frees its client's slot once, however often it is released", () => {
    const admission = new Admission(new ManualClock(), limits);
    const permit = admitted(admission.tryAdmit("device", "d"));
    admitted(admission.tryAdmit("device", "d"));
    permit.release();
    permit.release();
    expect(admission.stats("device")).toMatchObject({ inFlight: 1, clients: 1 });
    admitted(admission.tryAdmit("device", "d"));
    expect(admission.tryAdmit("device", "d").ok).toBe(false);
  });

  it("forgets a client once it has nothing in flight (memory is bounded by the work in flight)", () => {
    const admission = new Admission(new ManualClock(), limits);
    for (let i = 0; i < 100; i++) admitted(admission.tryAdmit("device", `d${i}`)).release();
    expect(admission.stats("device")).toMatchObject({ admitted: 100, inFlight: 0, clients: 0 });
  });

  it("hints a retry after about as long as work recently stayed in flight, clamped", async () => {
    const clock = new ManualClock();
    const admission = new Admission(clock, limits);
    expect(admission.retryAfterMs("grpc")).toBe(MIN_RETRY_AFTER_MS);
    const permit = admitted(admission.tryAdmit("grpc", "a"));
    clock.jump(200);
    permit.release();
    expect(admission.retryAfterMs("grpc")).toBe(200);
    // A moving average: one fast unit moves it a tenth of the way.
    admitted(admission.tryAdmit("grpc", "a")).release();
    expect(admission.retryAfterMs("grpc")).toBe(180);
    const slow = admitted(admission.tryAdmit("grpc", "a"));
    clock.jump(10 * 60_000);
    slow.release();
    expect(admission.retryAfterMs("grpc")).toBe(MAX_RETRY_AFTER_MS);
    expect(admission.retryAfterMs("node")).toBe(MIN_RETRY_AFTER_MS);
  });

  it("admit throws RESOURCE_EXHAUSTED with the class, reason, bound and retry hint", () => {
    const clock = new ManualClock();
    const admission = new Admission(clock, limits);
    admission.admit("node", "n1");
    admission.admit("node", "n1");
    let thrown: unknown;
    try {
      admission.admit("node", "n2");
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Throttled);
    const throttled = thrown as Throttled;
    expect(throttled.code).toBe(ErrorCode.ResourceExhausted);
    expect(throttled.details).toEqual({ class: "node", reason: "node", retryAfterMs: 10, limit: 2 });
    expect(throttled.message).toMatch(/overloaded: the node has 2 node requests in flight; retry in 10 ms/);
  });

  it("run releases its permit whether the work resolves or rejects", async () => {
    const admission = new Admission(new ManualClock(), limits);
    await expect(admission.run("node", "n", async () => 7)).resolves.toBe(7);
    await expect(
      admission.run("node", "n", async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(admission.stats("node")).toMatchObject({ inFlight: 0, admitted: 2 });
  });

  it("refuses limits that are not positive integers, naming the field", () => {
    expect(
      () =>
        new Admission(new ManualClock(), { ...limits, device: { maxInFlight: 0, maxInFlightPerClient: 1 } }),
    ).toThrow("admission device.maxInFlight must be a positive integer, got 0");
  });
});
