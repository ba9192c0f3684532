/**
 * respondOrLog (runtime/devices/edge/respond-or-log.ts) against a real nats-server: a request
 * answered after a message published without a reply subject (nothing to answer, no throw), and
 * an answer nats.js refuses to send (it throws: larger than the server's max_payload) logged, not
 * thrown, with the next request answered.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { respondOrLog } from "../../../runtime/devices/edge/respond-or-log.ts";
import { capturedLogger } from "../../support/captured-logger.ts";
import { natsUrl } from "./harness.ts";

describe("respondOrLog", () => {
  const connections: NatsConnection[] = [];
  const open = async () => {
    const nc = await connect({ servers: natsUrl() });
    connections.push(nc);
    return nc;
  };
  afterEach(async () => {
    await Promise.allSettled(connections.splice(0).map((nc) => nc.close()));
  });

  it("answers a request, and sends nothing (logged at debug, no throw) for a message without a reply subject", async () => {
    const { logger, lines } = capturedLogger("debug");
    const server = await open();
    const client = await open();
    const sub = server.subscribe("respond-or-log.status", {
      callback: (_error, message) => {
        respondOrLog(message, { up: true }, logger, "test status");
      },
    });
    await server.flush();
    client.publish("respond-or-log.status", new Uint8Array());
    const reply = await client.request("respond-or-log.status", new Uint8Array(), { timeout: 5000 });
    expect(reply.json()).toEqual({ up: true });
    expect(lines.map((line) => line.msg)).toEqual([
      "test status: a request without a reply subject, not answered",
    ]);
    sub.unsubscribe();
  });

  it("logs an answer nats.js refuses to send (larger than the server's max_payload) instead of throwing, and answers the next request", async () => {
    const { logger, lines } = capturedLogger("debug");
    const server = await open();
    const client = await open();
    const tooLarge = "x".repeat(server.info!.max_payload);
    const sub = server.subscribe("respond-or-log.large", {
      callback: (_error, message) => {
        const body = new TextDecoder().decode(message.data) === "large" ? tooLarge : "small";
        respondOrLog(message, body, logger, "test status");
      },
    });
    await server.flush();
    const inbox = client.subscribe("respond-or-log.inbox");
    client.publish("respond-or-log.large", "large", { reply: "respond-or-log.inbox" });
    const reply = await client.request("respond-or-log.large", "small", { timeout: 5000 });
    expect(reply.json()).toBe("small");
    expect(lines).toMatchObject([
      { msg: "test status: cannot reply", err: expect.stringMatching(/max_payload/) },
    ]);
    expect(inbox.getReceived()).toBe(0);
    inbox.unsubscribe();
    sub.unsubscribe();
  });
});
