import { describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { Admission } from "../../runtime/core/admission.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import type { LocalTwins } from "../../runtime/engine/local-twins.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { serveNodeRpc } from "../../runtime/routing/node-rpc.ts";
import { soloPlacement } from "../../runtime/routing/placement.ts";
import { nodeSubject } from "../../runtime/routing/protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

describe("node RPC admission control", () => {
  it("refuses calls from other nodes over the node bound with RESOURCE_EXHAUSTED, and still answers pings", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let entered = 0;
    const waiters: (() => void)[] = [];
    const local = {
      get: async () => {
        entered++;
        for (const wake of waiters.splice(0)) wake();
        await gate;
        return { version: 1 };
      },
    } as unknown as LocalTwins;
    const clock = new ManualClock();
    const admission = new Admission(clock, {
      grpc: { maxInFlight: 8, maxInFlightPerClient: 8 },
      device: { maxInFlight: 8, maxInFlightPerClient: 8 },
      node: { maxInFlight: 2, maxInFlightPerClient: 2 },
      watch: { maxInFlight: 8, maxInFlightPerClient: 8 },
    });
    const bus = new InProcessBus();
    const server = serveNodeRpc({
      transport: bus.connect(),
      placement: soloPlacement("n1"),
      local,
      shardOf: () => 0,
      clock,
      logger: silentLogger(),
      admission,
    });
    const caller = bus.connect();
    const call = (body: object) =>
      caller
        .request(nodeSubject("n1"), encoder.encode(JSON.stringify(body)), { timeoutMs: 30_000 })
        .then((reply) => JSON.parse(decoder.decode(reply.data)) as Record<string, unknown>);
    const get = { op: "get", ref: { type: "thermostat", id: "t1" } };
    const held = [call(get), call(get)];
    while (entered < 2) await new Promise<void>((resolve) => waiters.push(resolve));
    expect(await call(get)).toMatchObject({
      error: { code: "RESOURCE_EXHAUSTED", details: { class: "node", retryAfterMs: 10 } },
    });
    expect(await call({ op: "ping" })).toEqual({ ok: "pong" });
    open();
    for (const reply of await Promise.all(held)) expect(reply).toEqual({ ok: { version: 1 } });
    expect(admission.stats("node")).toMatchObject({ admitted: 2, refused: 1, inFlight: 0 });
    await server.stop();
  });
});
