import * as grpc from "@grpc/grpc-js";
import {
  CallCycle,
  ConcurrencyConflict,
  DeadlineExceeded,
  type DoppelError,
  FailedPrecondition,
  HandlerFailed,
  Internal,
  InvalidArgument,
  type JsonObject,
  NotFound,
  PermissionDenied,
  Quarantined,
  ResourceExhausted,
  Twin,
  Unauthenticated,
  Unavailable,
  VersionConflict,
  z,
} from "doppel";
import type { TwinApi } from "doppel/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DoppelClient } from "../../runtime/grpc/client.ts";
import type { TwinServiceClient } from "../../runtime/grpc/generated/doppel/v1/TwinService.ts";
import { type Gateway, startGateway } from "../../runtime/grpc/server.ts";
import { jsonToStruct } from "../../runtime/grpc/struct.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { type Harness, rawUnary, startHarness } from "./harness.ts";

/** A twin whose handler fails with an ordinary exception. */
class Faulty extends Twin<{ n: number }, { type: "bumped" }> {
  static readonly type = "faulty";
  static readonly commands = { explode: z.object({}) };
  initialState() {
    return { n: 0 };
  }
  apply(state: { n: number }) {
    return { n: state.n + 1 };
  }
  explode(): never {
    throw new Error("sensor table is empty");
  }
}

const fresh = { type: "thermostat", id: "fresh" };

function trailer(error: grpc.ServiceError | null, key: string): grpc.MetadataValue | undefined {
  return error?.metadata.get(key)[0];
}

describe("gateway error mapping", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ twins: [Faulty] });
  });
  afterEach(async () => {
    await h.stop();
  });

  /** After a bad request: the server still answers, and no twin has any event. */
  async function expectNothingWritten(): Promise<void> {
    expect(await h.client.listTypes()).toHaveLength(2);
    expect((await h.test.twins.query("thermostat")).views).toEqual([]);
    expect((await h.test.twins.query("faulty")).views).toEqual([]);
    await expect(h.client.getTwin(fresh)).rejects.toThrow(NotFound);
    const events = [];
    for await (const event of h.client.history(fresh)) events.push(event);
    expect(events).toEqual([]);
  }

  it.each([
    ["a dot", "t.1"],
    ["a star", "t*"],
    ["a greater-than sign", "t>"],
    ["a slash", "t/1"],
    ["a space", "t 1"],
    ["a control character", "t\u0001"],
    ["nothing", ""],
    ["too many characters", "x".repeat(129)],
  ])("refuses an id with %s as INVALID_ARGUMENT and writes nothing", async (_what, id) => {
    const { error } = await rawUnary((cb) =>
      h.raw.reportState(
        { type: "thermostat", id, patch: { fields: { temperature: { numberValue: 20 } } } },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(trailer(error, "doppel-error-code")).toBe("INVALID_ARGUMENT");
    expect(JSON.parse(String(trailer(error, "doppel-error-details")))).toMatchObject({ field: "id" });
    await expectNothingWritten();
  });

  it("refuses an invalid type name as INVALID_ARGUMENT", async () => {
    await expect(
      h.client.invoke({ type: "thermo.stat", id: "t1" }, "setTarget", { celsius: 20 }),
    ).rejects.toThrow(InvalidArgument);
    await expectNothingWritten();
  });

  const args = (json: JsonObject) => jsonToStruct(json);
  it.each<[string, (raw: TwinServiceClient, cb: grpc.requestCallback<unknown>) => unknown, grpc.status]>([
    [
      "an unknown twin type",
      (raw, cb) => raw.invokeCommand({ type: "boiler", id: "b1", command: "on" }, cb),
      grpc.status.NOT_FOUND,
    ],
    [
      "an unknown command",
      (raw, cb) => raw.invokeCommand({ ...fresh, command: "selfDestruct" }, cb),
      grpc.status.NOT_FOUND,
    ],
    [
      "arguments out of range",
      (raw, cb) => raw.invokeCommand({ ...fresh, command: "setTarget", args: args({ celsius: 100 }) }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "arguments of the wrong type",
      (raw, cb) => raw.invokeCommand({ ...fresh, command: "setTarget", args: args({ celsius: "hot" }) }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a reported patch failing the twin's schema",
      (raw, cb) => raw.reportState({ ...fresh, patch: args({ temperature: 500 }) }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a payload over the node's size limit",
      (raw, cb) => raw.reportState({ ...fresh, patch: args({ firmware: "x".repeat(70_000) }) }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a malformed message id",
      (raw, cb) =>
        raw.reportState({ ...fresh, patch: args({ temperature: 20 }), messageId: "has space" }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a malformed where filter",
      (raw, cb) => raw.queryTwins({ type: "thermostat", where: "reported.temperature >" }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a page size over the maximum",
      (raw, cb) => raw.queryTwins({ type: "thermostat", limit: 5000 }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
    [
      "a forged page token",
      (raw, cb) => raw.queryTwins({ type: "thermostat", pageToken: "not-a-token" }, cb),
      grpc.status.INVALID_ARGUMENT,
    ],
  ])("answers %s with the documented status and writes nothing", async (_what, call, status) => {
    const { error } = await rawUnary<unknown>((cb) => call(h.raw, cb));
    expect(error?.code).toBe(status);
    expect(trailer(error, "doppel-error-code")).toBe(grpc.status[status]);
    expect(error?.details).toBeTruthy();
    await expectNothingWritten();
  });

  it("refuses a Struct value without a kind as INVALID_ARGUMENT", async () => {
    const { error } = await rawUnary((cb) =>
      h.raw.invokeCommand(
        { type: "thermostat", id: "fresh", command: "setTarget", args: { fields: { celsius: {} } } },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe("args.celsius has no value set (a google.protobuf.Value needs one kind)");
    await expectNothingWritten();
  });

  it("refuses a NaN argument as INVALID_ARGUMENT", async () => {
    const { error } = await rawUnary((cb) =>
      h.raw.invokeCommand(
        {
          type: "thermostat",
          id: "fresh",
          command: "setTarget",
          args: { fields: { celsius: { numberValue: Number.NaN } } },
        },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    await expectNothingWritten();
  });

  it("answers a stale expected_version with FAILED_PRECONDITION and doppel-error-code VERSION_CONFLICT", async () => {
    const t1 = { type: "thermostat", id: "t1" };
    const { version } = await h.client.reportState(t1, { temperature: 20 });
    const { error } = await rawUnary((cb) =>
      h.raw.invokeCommand(
        {
          type: "thermostat",
          id: "t1",
          command: "setTarget",
          args: { fields: { celsius: { numberValue: 22 } } },
          expectedVersion: version - 1,
        },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(trailer(error, "doppel-error-code")).toBe("VERSION_CONFLICT");
    expect(JSON.parse(String(trailer(error, "doppel-error-details")))).toEqual({
      expected: version - 1,
      actual: version,
    });
    expect((await h.client.getTwin(t1)).version).toBe(version);
  });

  it("answers a handler's business refusal with FAILED_PRECONDITION and leaves the twin unchanged", async () => {
    const t1 = { type: "thermostat", id: "t1" };
    const { version } = await h.client.reportState(t1, { temperature: 35 });
    const { error } = await rawUnary((cb) =>
      h.raw.invokeCommand(
        { type: "thermostat", id: "t1", command: "acknowledgeAlarm", args: { fields: {} } },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(trailer(error, "doppel-error-code")).toBe("FAILED_PRECONDITION");
    expect(error?.details).toContain("still at 35");
    expect((await h.client.getTwin(t1)).version).toBe(version);
  });

  it("answers a handler that throws with UNKNOWN and HANDLER_FAILED, writing nothing", async () => {
    const { error } = await rawUnary((cb) =>
      h.raw.invokeCommand({ type: "faulty", id: "f1", command: "explode", args: null }, cb),
    );
    expect(error?.code).toBe(grpc.status.UNKNOWN);
    expect(trailer(error, "doppel-error-code")).toBe("HANDLER_FAILED");
    await expect(h.client.invoke({ type: "faulty", id: "f1" }, "explode")).rejects.toThrow(HandlerFailed);
    await expectNothingWritten();
  });
});

/** A TwinApi whose every method fails with the error the test chose. */
function failingApi(error: () => unknown): TwinApi {
  const fail = async (): Promise<never> => {
    throw error();
  };
  return {
    get: fail,
    invoke: fail,
    updateDesired: fail,
    report: fail,
    query: fail,
    history: fail,
    telemetry: fail,
    recordTelemetry: fail,
    watch: () => {
      throw error();
    },
  };
}

describe("gateway error mapping over the wire, for every Doppel error", () => {
  let current: unknown;
  let gateway: Gateway;
  let client: DoppelClient;
  beforeAll(async () => {
    gateway = await startGateway({
      api: failingApi(() => current),
      types: () => [],
      listen: "127.0.0.1:0",
      maxMessageBytes: 1024 * 1024,
      logger: silentLogger(),
    });
    client = new DoppelClient(gateway.address);
  });
  afterAll(async () => {
    client.close();
    await gateway.stop();
  });

  it.each<[string, DoppelError]>([
    ["INVALID_ARGUMENT", new InvalidArgument("bad", { field: "id" })],
    ["NOT_FOUND", new NotFound("gone")],
    ["VERSION_CONFLICT", new VersionConflict(1, 2, "thermostat/t1")],
    ["FAILED_PRECONDITION", new FailedPrecondition("no")],
    ["CALL_CYCLE", new CallCycle(["a/1", "b/1", "a/1"])],
    ["CONCURRENCY_CONFLICT", new ConcurrencyConflict("raced")],
    ["QUARANTINED", new Quarantined("held")],
    ["UNAVAILABLE", new Unavailable("store down")],
    ["DEADLINE_EXCEEDED", new DeadlineExceeded("late")],
    ["RESOURCE_EXHAUSTED", new ResourceExhausted("mailbox full")],
    ["HANDLER_FAILED", new HandlerFailed("threw")],
    ["UNAUTHENTICATED", new Unauthenticated("no key")],
    ["PERMISSION_DENIED", new PermissionDenied("lacks the 'command' scope", { scope: "command" })],
  ])("a %s raised by the API reaches the client as the same error class", async (_code, error) => {
    current = error;
    const received = await client.getTwin({ type: "x", id: "y" }).catch((e: unknown) => e);
    expect(received).toBeInstanceOf(error.constructor);
    expect(received).toMatchObject({ code: error.code, message: error.message, details: error.details });
  });

  it("a non-error thrown by the API becomes INTERNAL without its text, and the server keeps serving", async () => {
    current = "secret connection string";
    const received = await client.invoke({ type: "x", id: "y" }, "go").catch((e: unknown) => e);
    expect(received).toBeInstanceOf(Internal);
    expect((received as Internal).message).not.toContain("secret");
    current = new NotFound("still here");
    await expect(client.getTwin({ type: "x", id: "y" })).rejects.toThrow("still here");
  });

  it("a watch whose subscription throws fails the stream instead of the process", async () => {
    current = new Unavailable("feed down");
    const iterate = async () => {
      for await (const _ of client.watch({ type: "x", id: "y" })) {
        // no item expected
      }
    };
    await expect(iterate()).rejects.toThrow(Unavailable);
  });
});
