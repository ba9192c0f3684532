import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import type { Transport } from "../../cluster/transport/transport.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { edgeRpcSubject, serveEdgeRpc } from "../../runtime/routing/edge-rpc.ts";
import type { NodeRpcServer } from "../../runtime/routing/node-rpc.ts";
import { Pump } from "../../twins/pump.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const EDGE = "plant-u";
const encoder = new TextEncoder();

/** The edge's side of routed-down commands: what it runs, and the precise refusals of anything else. */
describe("edge RPC server", () => {
  let edge: DoppelNode;
  let wire: Transport;
  let server: NodeRpcServer;
  const ask = async (body: string | object) => {
    const data = encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
    const reply = await wire.request(edgeRpcSubject(EDGE), data, { timeoutMs: 10_000 });
    return JSON.parse(new TextDecoder().decode(reply.data)) as { ok?: unknown; error?: { code: string } };
  };

  beforeAll(async () => {
    edge = await DoppelNode.start(
      { nodeId: "edge-u", store: { kind: "memory" }, grpc: { listen: false }, shards: 4 },
      { twins: [Thermostat, Pump], store: new MemoryEventStore(), logger: silentLogger() },
    );
    const bus = new InProcessBus();
    wire = bus.connect();
    server = serveEdgeRpc({
      transport: wire,
      edge: EDGE,
      twins: edge.twins,
      types: ["thermostat"],
      clock: edge.engine.clock,
      logger: silentLogger(),
    });
  });
  afterAll(async () => {
    await server?.stop();
    await wire?.close();
    await edge?.stop();
  });

  it("runs a routed command with the caller's principal", async () => {
    const ref = { type: "thermostat", id: "u1" };
    const reply = await ask({
      op: "invoke",
      ref,
      command: "setTarget",
      args: { celsius: 22 },
      principal: "service-key:abc",
      timeoutMs: 5000,
    });
    expect(reply.ok).toMatchObject({ version: expect.any(Number) });
    const history = await edge.twins.history(ref, { limit: 100 });
    expect(history.find((e) => e.type === "setPointChanged")).toMatchObject({ principal: "service-key:abc" });
  });

  it("refuses malformed requests, other ops and types it does not run, precisely", async () => {
    expect((await ask("not json")).error?.code).toBe("INVALID_ARGUMENT");
    expect((await ask({ op: "get", ref: { type: "thermostat", id: "u1" } })).error?.code).toBe(
      "INVALID_ARGUMENT",
    );
    expect(
      (await ask({ op: "invoke", ref: { type: "thermostat", id: "u1" }, command: "setTarget", args: {} }))
        .error?.code,
    ).toBe("INVALID_ARGUMENT");
    const pump = await ask({
      op: "invoke",
      ref: { type: "pump", id: "p1" },
      command: "start",
      args: {},
      timeoutMs: 5000,
    });
    expect(pump.error).toMatchObject({ code: "FAILED_PRECONDITION", details: { reason: "not-edge-type" } });
    expect((await edge.twins.history({ type: "pump", id: "p1" }, { limit: 10 })).length).toBe(0);
    expect(() => edgeRpcSubject("a.b")).toThrow(/edge name "a\.b" must be a letter/);
  });
});
