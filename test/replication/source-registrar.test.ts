/**
 * The registrar's handling of its subscription, with a fake connection (the JetStream API's
 * answers held back at will): a subscription error, a reply that cannot be sent and more requests
 * than it works on at once each leave it answering later requests. Against real servers:
 * test/integration/edge/ (thin-edge, thick-edge, hub-lock, shared-replication...).
 */
import { describe, expect, it } from "vitest";
import { MAX_WAITING_REGISTRATIONS, SourceRegistrar } from "../../runtime/replication/source-registrar.ts";
import { capturedLogger } from "../support/captured-logger.ts";
import { eventually } from "../support/eventually.ts";
import { heldJetStream } from "../support/held-jetstream.ts";

const REGISTER = "doppel.edge.plant-a.register";
const REGISTRATION = { kind: "thick", stream: "DOPPEL_EDGE_LOG" };

describe("source registrar", () => {
  it("answers UNAVAILABLE beyond the requests it works on, and answers again once they are done", async () => {
    const cloud = heldJetStream();
    const registrar = new SourceRegistrar(cloud.nc, {
      ingressStream: "DOPPEL_INGRESS",
      logger: capturedLogger().logger,
    });
    await registrar.start();
    for (let i = 0; i < MAX_WAITING_REGISTRATIONS + 3; i++) cloud.request(REGISTER, REGISTRATION);
    expect(cloud.answers).toEqual([
      { code: "UNAVAILABLE" },
      { code: "UNAVAILABLE" },
      { code: "UNAVAILABLE" },
    ]);
    cloud.release();
    await eventually(() => cloud.answers.length === MAX_WAITING_REGISTRATIONS + 3, "every request answered");
    expect(cloud.answers.slice(3).every((r) => r.code === "FAILED_PRECONDITION")).toBe(true);
    cloud.request(REGISTER, REGISTRATION);
    await eventually(
      () => cloud.answers.length === MAX_WAITING_REGISTRATIONS + 4,
      "a later request answered",
    );
    expect(cloud.answers.at(-1)).toEqual({ code: "FAILED_PRECONDITION" });
    await registrar.stop();
  });

  it("logs a subscription error and a reply it cannot send, and goes on answering", async () => {
    const cloud = heldJetStream();
    const { logger, lines } = capturedLogger();
    const registrar = new SourceRegistrar(cloud.nc, { ingressStream: "DOPPEL_INGRESS", logger });
    await registrar.start();
    cloud.release();
    cloud.subscriptionError(new Error("Permissions Violation for Subscription to doppel.edge.*.register"));
    cloud.request(REGISTER, REGISTRATION, () => {
      throw new Error("connection closed");
    });
    await eventually(
      () => lines.some((line) => line.msg === "edge source registration: cannot reply"),
      "the failed reply logged",
    );
    expect(lines.map((line) => line.msg)).toContain("edge source registrations: subscription error");
    cloud.request(REGISTER, REGISTRATION);
    await eventually(() => cloud.answers.length === 1, "the next request answered");
    expect(cloud.answers).toEqual([{ code: "FAILED_PRECONDITION" }]);
    await registrar.stop();
  });
});
