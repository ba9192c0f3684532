import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { afterEach, describe, expect, it } from "vitest";
import { Admission } from "../../runtime/core/admission.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import { loadContract } from "../../runtime/grpc/proto.ts";
import type { GatewayOptions } from "../../runtime/grpc/server.ts";
import { ApiKeys, createKey } from "../../runtime/security/api-keys.ts";
import { barrier, type Harness, overrideApi, rawUnary, startHarness } from "./harness.ts";

const limits = {
  grpc: { maxInFlight: 3, maxInFlightPerClient: 2 },
  device: { maxInFlight: 8, maxInFlightPerClient: 8 },
  node: { maxInFlight: 8, maxInFlightPerClient: 8 },
  watch: { maxInFlight: 2, maxInFlightPerClient: 1 },
};

/** A gateway whose `GetTwin` calls wait until `open` resolves (each signals `entered` first). */
async function startHeld(admission: Admission, gateway: Partial<GatewayOptions> = {}, token?: string) {
  const open = barrier();
  let entered = 0;
  let enteredBarrier = barrier();
  const h = await startHarness({
    gateway: { admission, ...gateway },
    ...(token ? { client: { token } } : {}),
    wrapApi: (api) =>
      overrideApi(api, {
        get: async (ref) => {
          entered++;
          enteredBarrier.resolve();
          await open.promise;
          return api.get(ref);
        },
      }),
  });
  await h.client.reportState({ type: "thermostat", id: "t1" }, { temperature: 20 });
  return {
    h,
    open: () => open.resolve(),
    /** Resolves once `count` GetTwin calls are inside the handler. */
    async entered(count: number) {
      while (entered < count) {
        await enteredBarrier.promise;
        enteredBarrier = barrier();
      }
    },
  };
}

function connect(h: Harness) {
  // A client of its own connection (grpc-js shares connections between clients of one target by default).
  return new (loadContract().Client)(h.gateway.address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
}

function getTwin(client: ReturnType<typeof connect>, token?: string) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return rawUnary<unknown>((cb) => client.getTwin({ type: "thermostat", id: "t1" }, metadata, cb));
}

function healthCheck(address: string): Promise<string> {
  const health = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  const check = healthService["Check"];
  if (!check) throw new Error("no Check method");
  return new Promise<string>((resolve, reject) => {
    health.makeUnaryRequest(
      check.path,
      check.requestSerialize,
      check.responseDeserialize,
      { service: "doppel.v1.TwinService" },
      (error: grpc.ServiceError | null, response?: object) => {
        health.close();
        if (error) reject(error);
        else resolve(String((response as { status?: string } | undefined)?.status));
      },
    );
  });
}

describe("gateway admission control", () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  it("answers RESOURCE_EXHAUSTED with retry-after-ms over the node's bound, while health checks answer", async () => {
    const admission = new Admission(new ManualClock(), limits);
    const held = await startHeld(admission);
    const { h } = held;
    const clients = [connect(h), connect(h)];
    stop = async () => {
      for (const c of clients) c.close();
      await h.stop();
    };
    const first = [getTwin(clients[0]!), getTwin(clients[0]!), getTwin(clients[1]!)];
    await held.entered(3);
    const refused = await getTwin(clients[1]!);
    expect(refused.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.error?.metadata.get("doppel-error-code")).toEqual(["RESOURCE_EXHAUSTED"]);
    expect(Number(refused.error?.metadata.get("retry-after-ms")[0])).toBeGreaterThanOrEqual(10);
    expect(refused.error?.details).toMatch(/overloaded: the node has 3 grpc requests in flight/);
    // Health is not subject to the bound.
    expect(await healthCheck(h.gateway.address)).toBe("SERVING");
    // The DoppelClient rebuilds the error with its details.
    await expect(h.client.getTwin({ type: "thermostat", id: "t1" })).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      details: { class: "grpc", reason: "node", limit: 3 },
    });
    held.open();
    for (const call of await Promise.all(first)) expect(call.error).toBeNull();
    expect(admission.stats("grpc")).toMatchObject({ inFlight: 0, admitted: 4, refused: 2 });
    // Below the bound again: answered.
    expect((await h.client.getTwin({ type: "thermostat", id: "t1" })).version).toBeGreaterThan(0);
  });

  it("bounds each connection: one client at its bound is refused while another is admitted", async () => {
    const admission = new Admission(new ManualClock(), {
      ...limits,
      grpc: { maxInFlight: 10, maxInFlightPerClient: 2 },
    });
    const held = await startHeld(admission);
    const { h } = held;
    const [busy, other] = [connect(h), connect(h)];
    stop = async () => {
      busy.close();
      other.close();
      await h.stop();
    };
    const first = [getTwin(busy), getTwin(busy)];
    await held.entered(2);
    const refused = await getTwin(busy);
    expect(refused.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.error?.details).toMatch(/this client has 2 grpc requests in flight/);
    const admitted = getTwin(other);
    await held.entered(3);
    held.open();
    expect((await admitted).error).toBeNull();
    for (const call of await Promise.all(first)) expect(call.error).toBeNull();
  });

  it("counts every connection of one API key as one client", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doppel-admission-keys-"));
    const file = join(dir, "keys.json");
    const busyKey = createKey(file, { scopes: ["read", "write"] }).key;
    const otherKey = createKey(file, { scopes: ["read"] }).key;
    const clock = new ManualClock();
    const admission = new Admission(clock, { ...limits, grpc: { maxInFlight: 10, maxInFlightPerClient: 2 } });
    const held = await startHeld(admission, { security: { keys: new ApiKeys(file, clock) } }, busyKey);
    const { h } = held;
    const connections = [connect(h), connect(h), connect(h)];
    stop = async () => {
      for (const c of connections) c.close();
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    };
    // One call of the busy key on each of two connections: its bound (2) is reached.
    const first = [getTwin(connections[0]!, busyKey), getTwin(connections[1]!, busyKey)];
    await held.entered(2);
    const refused = await getTwin(connections[2]!, busyKey);
    expect(refused.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.error?.details).toMatch(/this client has 2 grpc requests in flight/);
    // Another key on the same connection is its own client.
    const admitted = getTwin(connections[2]!, otherKey);
    await held.entered(3);
    held.open();
    expect((await admitted).error).toBeNull();
    for (const call of await Promise.all(first)) expect(call.error).toBeNull();
  });

  it("bounds open WatchTwin streams apart from calls, per client and node-wide, until a watch ends", async () => {
    const admission = new Admission(new ManualClock(), limits); // watch: 2 in flight, 1 per client
    const h = await startHarness({ gateway: { admission } });
    const [a, b, c] = [connect(h), connect(h), connect(h)];
    stop = async () => {
      for (const client of [a, b, c]) client.close();
      await h.stop();
    };
    await h.client.reportState({ type: "thermostat", id: "t1" }, { temperature: 20 });
    /** Opens a watch; resolves "open" once its first message (the current state) arrives, or the status code. */
    const watch = (client: ReturnType<typeof connect>) => {
      const call = client.watchTwin({ type: "thermostat", id: "t1" });
      const outcome = new Promise<string>((resolve) => {
        call.on("data", () => resolve("open"));
        call.on("error", (error: grpc.ServiceError) =>
          resolve(grpc.status[error.code] ?? String(error.code)),
        );
      });
      return { call, outcome };
    };
    const first = watch(a);
    expect(await first.outcome).toBe("open");
    expect(await watch(a).outcome).toBe("RESOURCE_EXHAUSTED"); // a's bound: 1
    const second = watch(b);
    expect(await second.outcome).toBe("open");
    expect(await watch(c).outcome).toBe("RESOURCE_EXHAUSTED"); // the node's bound: 2
    // Calls are a class of their own: still answered while the watches are open.
    expect((await h.client.getTwin({ type: "thermostat", id: "t1" })).version).toBeGreaterThan(0);
    // Ending a watch frees its slot.
    first.call.cancel();
    for (let turns = 0; admission.stats("watch").inFlight > 1; turns++) {
      if (turns > 10_000) throw new Error("the cancelled watch kept its permit");
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const third = watch(c);
    expect(await third.outcome).toBe("open");
    second.call.cancel();
    third.call.cancel();
  });

  it("releases the permit of a call that fails, and of a stream", async () => {
    const admission = new Admission(new ManualClock(), limits);
    const h = await startHarness({ gateway: { admission } });
    stop = () => h.stop();
    await expect(h.client.getTwin({ type: "thermostat", id: "nobody" })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    await h.client.reportState({ type: "thermostat", id: "t1" }, { temperature: 20 });
    const events: unknown[] = [];
    for await (const event of h.client.history({ type: "thermostat", id: "t1" })) events.push(event);
    expect(events.length).toBeGreaterThan(0);
    expect(admission.stats("grpc")).toMatchObject({ inFlight: 0, refused: 0, admitted: 3 });
  });
});
