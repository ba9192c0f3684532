/**
 * Node liveness on the real nats-server: a call waiting on a node whose connection closes (as when
 * its process is killed) is told the node is gone, long before the call's deadline; a node that is
 * alive but slow is not.
 */
import { afterEach, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { GONE, NodeLiveness } from "../../../runtime/routing/liveness.ts";
import { nodeSubject } from "../../../runtime/routing/protocol.ts";
import { natsUrl } from "./harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

describe("node liveness over NATS", () => {
  const open: NatsTransport[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close().catch(() => undefined)));
  });

  /** A node "b" that answers pings and takes calls, answering them after `answerAfterMs` (never if undefined). */
  async function nodeB(id: string, answerAfterMs?: number): Promise<NatsTransport> {
    const b = await NatsTransport.connect({ servers: natsUrl(), name: `liveness-${id}` });
    open.push(b);
    b.subscribe(nodeSubject(id), (message) => {
      const { op } = JSON.parse(decoder.decode(message.data)) as { op: string };
      if (op === "ping") b.respond(message, encoder.encode('{"ok":"pong"}'));
      else if (answerAfterMs !== undefined)
        setTimeout(() => b.respond(message, encoder.encode('{"ok":"done"}')), answerAfterMs);
    });
    // The subscription is registered with the server once a round trip has passed.
    await b.request(nodeSubject(id), encoder.encode('{"op":"ping"}'), { timeoutMs: 2000 });
    return b;
  }

  it("tells a waiting call that its node is gone once the node's connection closes", async () => {
    const id = `liveness-dead-${process.pid}`;
    const b = await nodeB(id);
    const a = await NatsTransport.connect({ servers: natsUrl(), name: "liveness-a" });
    open.push(a);
    const liveness = new NodeLiveness(a, 50);
    const call = a.request(nodeSubject(id), encoder.encode('{"op":"get"}'), { timeoutMs: 30_000 });
    setTimeout(() => void b.close(), 200);
    expect(await liveness.watch(id, call)).toBe(GONE);
  });

  it("keeps a call waiting on a node that is alive but slow, and gives its answer", async () => {
    const id = `liveness-slow-${process.pid}`;
    await nodeB(id, 400);
    const a = await NatsTransport.connect({ servers: natsUrl(), name: "liveness-a" });
    open.push(a);
    const liveness = new NodeLiveness(a, 50);
    const call = a.request(nodeSubject(id), encoder.encode('{"op":"get"}'), { timeoutMs: 30_000 });
    const answer = await liveness.watch(id, call);
    expect(answer).not.toBe(GONE);
    expect(decoder.decode((answer as { data: Uint8Array }).data)).toBe('{"ok":"done"}');
  });
});
