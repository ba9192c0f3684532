/**
 * The registrar's handling of its subscription, with a fake connection (the JetStream API's
 * answers held back at will): a subscription error, a reply that cannot be sent and more requests
 * than it works on at once each leave it answering later requests. Against real servers:
 * test/integration/edge/ (thin-edge, thick-edge, hub-lock, shared-replication...).
 */
import type { Msg, NatsConnection, SubscriptionOptions } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../runtime/observability/logger.ts";
import { MAX_WAITING_REGISTRATIONS, SourceRegistrar } from "../../runtime/replication/source-registrar.ts";
import { eventually } from "../support/eventually.ts";

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const reply = (data: Uint8Array) => ({ data, json: () => JSON.parse(new TextDecoder().decode(data)) });

/** A connection whose JetStream API has no DOPPEL_EDGE_LOGS, answering STREAM.INFO only once `release()`d. */
function fakeCloud() {
  let callback: ((error: Error | null, message: Msg) => void) | undefined;
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const nc = {
    options: {},
    async request(subject: string) {
      if (subject === "$JS.API.INFO") return reply(json({ domain: "cloud" }));
      await released;
      return reply(json({ error: { code: 404, err_code: 10059, description: "stream not found" } }));
    },
    subscribe(_subject: string, options: SubscriptionOptions) {
      callback = options.callback as typeof callback;
      return { unsubscribe() {} };
    },
  } as unknown as NatsConnection;
  const replies: { code?: string; ok?: unknown }[] = [];
  const request = (respond?: () => boolean) =>
    callback!(null, {
      subject: "doppel.edge.plant-a.register",
      data: json({ kind: "thick", stream: "DOPPEL_EDGE_LOG" }),
      respond:
        respond ??
        ((data: Uint8Array) => {
          const answer = JSON.parse(new TextDecoder().decode(data));
          replies.push(answer.error ? { code: answer.error.code } : { ok: answer.ok });
          return true;
        }),
    } as unknown as Msg);
  return { nc, replies, request, release, subscriptionError: (error: Error) => callback!(error, {} as Msg) };
}

function capturedLogger() {
  const lines: { msg: string }[] = [];
  const logger = createLogger({
    level: "warn",
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}

describe("source registrar", () => {
  it("answers UNAVAILABLE beyond the requests it works on, and answers again once they are done", async () => {
    const cloud = fakeCloud();
    const registrar = new SourceRegistrar(cloud.nc, {
      ingressStream: "DOPPEL_INGRESS",
      logger: capturedLogger().logger,
    });
    await registrar.start();
    for (let i = 0; i < MAX_WAITING_REGISTRATIONS + 3; i++) cloud.request();
    expect(cloud.replies).toEqual([
      { code: "UNAVAILABLE" },
      { code: "UNAVAILABLE" },
      { code: "UNAVAILABLE" },
    ]);
    cloud.release();
    await eventually(() => cloud.replies.length === MAX_WAITING_REGISTRATIONS + 3, "every request answered");
    expect(cloud.replies.slice(3).every((r) => r.code === "FAILED_PRECONDITION")).toBe(true);
    cloud.request();
    await eventually(
      () => cloud.replies.length === MAX_WAITING_REGISTRATIONS + 4,
      "a later request answered",
    );
    expect(cloud.replies.at(-1)).toEqual({ code: "FAILED_PRECONDITION" });
    await registrar.stop();
  });

  it("logs a subscription error and a reply it cannot send, and goes on answering", async () => {
    const cloud = fakeCloud();
    const { logger, lines } = capturedLogger();
    const registrar = new SourceRegistrar(cloud.nc, { ingressStream: "DOPPEL_INGRESS", logger });
    await registrar.start();
    cloud.release();
    cloud.subscriptionError(new Error("Permissions Violation for Subscription to doppel.edge.*.register"));
    cloud.request(() => {
      throw new Error("connection closed");
    });
    await eventually(
      () => lines.some((line) => line.msg === "edge source registration: cannot reply"),
      "the failed reply logged",
    );
    expect(lines.map((line) => line.msg)).toContain("edge source registrations: subscription error");
    cloud.request();
    await eventually(() => cloud.replies.length === 1, "the next request answered");
    expect(cloud.replies).toEqual([{ code: "FAILED_PRECONDITION" }]);
    await registrar.stop();
  });
});
