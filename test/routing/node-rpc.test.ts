import { describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import type { LocalTwins } from "../../runtime/engine/local-twins.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { serveNodeRpc } from "../../runtime/routing/node-rpc.ts";
import { soloPlacement } from "../../runtime/routing/placement.ts";
import { nodeSubject } from "../../runtime/routing/protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

describe("node RPC server", () => {
  it("refuses malformed requests with INVALID_ARGUMENT before running anything, and runs a well-formed one", async () => {
    const deadlines: number[] = [];
    const local = {
      invoke: async (_ref: unknown, _command: string, _args: unknown, options: { deadline: number }) => {
        deadlines.push(options.deadline);
        return { version: 1 };
      },
      updateDesired: async (_ref: unknown, _patch: unknown, options: { deadline: number }) => {
        deadlines.push(options.deadline);
        return { version: 1 };
      },
      report: async (_ref: unknown, _patch: unknown, options: { deadline: number }) => {
        deadlines.push(options.deadline);
        return { version: 1 };
      },
    } as unknown as LocalTwins;
    const clock = new ManualClock(1000);
    const bus = new InProcessBus();
    const server = serveNodeRpc({
      transport: bus.connect(),
      placement: soloPlacement("n1"),
      local,
      shardOf: () => 0,
      clock,
      logger: silentLogger(),
    });
    const caller = bus.connect();
    const call = async (body: unknown) => {
      const data = encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
      const reply = await caller.request(nodeSubject("n1"), data, { timeoutMs: 30_000 });
      return JSON.parse(decoder.decode(reply.data)) as {
        ok?: unknown;
        error?: { code: string; message: string };
      };
    };
    const ref = { type: "thermostat", id: "t1" };
    const refused = async (body: unknown, message: RegExp) => {
      const reply = await call(body);
      expect(reply.error?.code).toBe("INVALID_ARGUMENT");
      expect(reply.error?.message).toMatch(message);
    };
    await refused("{", /not JSON/);
    await refused({ op: "invoke" }, /\{ op, ref, \.\.\. \}/);
    await refused({ op: "delete", ref, timeoutMs: 10 }, /unknown node request op 'delete'/);
    const invoke = { op: "invoke", ref, command: "setTarget", args: {} };
    await refused(invoke, /timeoutMs, a positive number/);
    await refused({ ...invoke, timeoutMs: "5000" }, /timeoutMs/);
    await refused({ ...invoke, timeoutMs: 0 }, /timeoutMs/);
    await refused({ ...invoke, timeoutMs: -1 }, /timeoutMs/);
    // 1e400 parses to Infinity: no deadline can be computed from it.
    await refused(
      JSON.stringify({ ...invoke, timeoutMs: 1 }).replace('"timeoutMs":1', '"timeoutMs":1e400'),
      /timeoutMs/,
    );
    await refused({ ...invoke, command: 7, timeoutMs: 5000 }, /command name and an args object/);
    await refused({ ...invoke, args: [1], timeoutMs: 5000 }, /command name and an args object/);
    await refused({ op: "desired", ref, timeoutMs: 5000 }, /desired request needs a patch object/);
    await refused({ op: "report", ref, patch: "x", timeoutMs: 5000 }, /report request needs a patch object/);
    expect(deadlines).toEqual([]);

    expect(await call({ ...invoke, timeoutMs: 5000 })).toEqual({ ok: { version: 1 } });
    expect(await call({ op: "desired", ref, patch: {}, timeoutMs: 250 })).toEqual({ ok: { version: 1 } });
    expect(deadlines).toEqual([6000, 1250]);
    await server.stop();
  });
});
