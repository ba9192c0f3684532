import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { DeadlineExceeded, InvalidArgument, Twin, Unavailable, z } from "doppel";
import type { InvokeOptions } from "doppel/node";
import { service as healthService } from "grpc-health-check";
import descriptor, { type IFileDescriptorProto } from "protobufjs/ext/descriptor.js";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway } from "../../runtime/grpc/server.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { barrier, type Harness, overrideApi, rawUnary, startHarness } from "./harness.ts";

/** Released by the test: the `wait` command of {@link Slow} finishes only then. */
let gate = barrier();

/** A twin whose command waits for the test. */
class Slow extends Twin<{ done: number }, { type: "done" }> {
  static readonly type = "slow";
  static readonly commands = { wait: z.object({}) };
  initialState() {
    return { done: 0 };
  }
  apply(state: { done: number }) {
    return { done: state.done + 1 };
  }
  async wait(): Promise<void> {
    await gate.promise;
    this.emit({ type: "done" });
  }
}

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] } | null;
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] } | null;
  errorResponse?: { errorCode: number; errorMessage: string } | null;
}

interface ReflectionStub extends grpc.Client {
  serverReflectionInfo(): grpc.ClientDuplexStream<Record<string, string>, ReflectionResponse>;
}

/** Asks the server's reflection service one question, as grpcurl does. */
async function reflect(address: string, request: Record<string, string>): Promise<ReflectionResponse> {
  const main = createRequire(import.meta.url).resolve("@grpc/reflection");
  const path = join(dirname(main), "..", "proto", "grpc", "reflection", "v1", "reflection.proto");
  const definition = protoLoader.loadSync(path, {
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const grpcObject = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: {
      reflection: { v1: { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => ReflectionStub } };
    };
  };
  const client = new grpcObject.grpc.reflection.v1.ServerReflection(
    address,
    grpc.credentials.createInsecure(),
  );
  try {
    return await new Promise((resolve, reject) => {
      const call = client.serverReflectionInfo();
      call.on("data", (response: ReflectionResponse) => {
        resolve(response);
        call.end();
      });
      call.on("error", reject);
      call.write(request);
    });
  } finally {
    client.close();
  }
}

function decodeFile(bytes: Buffer): IFileDescriptorProto {
  return descriptor.FileDescriptorProto.toObject(
    descriptor.FileDescriptorProto.decode(bytes),
  ) as IFileDescriptorProto;
}

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n > 127; n = Math.floor(n / 128)) out.push((n & 127) | 128);
  out.push(n);
  return out;
}

/** The bytes of an InvokeCommandRequest whose args nest `depth` structs deep (built without recursion). */
function deeplyNestedRequest(depth: number): Buffer {
  const headers: Buffer[] = [];
  let inner = 2; // innermost Value: null_value = 0
  const entry = (valueLength: number) => [0x0a, 0x01, 0x61, 0x12, ...varint(valueLength)]; // key "a", value
  for (let i = 0; i < depth; i++) {
    const entryLength = entry(inner).length + inner;
    const structLength = 1 + varint(entryLength).length + entryLength;
    headers.push(Buffer.from([0x2a, ...varint(structLength), 0x0a, ...varint(entryLength), ...entry(inner)]));
    inner += headers.at(-1)?.length ?? 0;
  }
  const argsEntry = entry(inner).length + inner;
  const prefix = Buffer.from([
    ...[0x0a, 10, ...Buffer.from("thermostat")],
    ...[0x12, 2, ...Buffer.from("t1")],
    ...[0x1a, 9, ...Buffer.from("setTarget")],
    ...[
      0x22,
      ...varint(1 + varint(argsEntry).length + argsEntry),
      0x0a,
      ...varint(argsEntry),
      ...entry(inner),
    ],
  ]);
  return Buffer.concat([prefix, ...headers.reverse(), Buffer.from([0x08, 0x00])]);
}

describe("gateway server", () => {
  let h: Harness;
  afterEach(async () => {
    gate.resolve();
    gate = barrier();
    await h.stop();
  });

  it("listens on the actual port when asked for port 0", async () => {
    h = await startHarness();
    expect(h.gateway.address).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
  });

  it("lists the twin, health and reflection services through reflection", async () => {
    h = await startHarness();
    const response = await reflect(h.gateway.address, { listServices: "" });
    expect(response.listServicesResponse?.service.map((s) => s.name).sort()).toEqual([
      "doppel.v1.TwinService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
    ]);
  });

  it("describes the service with files that name their dependencies, as grpcurl needs", async () => {
    h = await startHarness();
    const response = await reflect(h.gateway.address, { fileContainingSymbol: "doppel.v1.TwinService" });
    const files = (response.fileDescriptorResponse?.fileDescriptorProto ?? []).map(decodeFile);
    const [main, ...deps] = files;
    expect(main?.service?.[0]?.name).toBe("TwinService");
    expect(main?.service?.[0]?.method?.map((m) => m.name).sort()).toEqual([
      "GetCluster",
      "GetHistory",
      "GetTelemetry",
      "GetTwin",
      "InvokeCommand",
      "ListTypes",
      "QueryTwins",
      "ReportState",
      "UpdateDesired",
      "WatchTwin",
    ]);
    expect(main?.dependency).toEqual(deps.map((d) => d.name));
    const google = deps.find((d) => d.package === "google.protobuf");
    const struct = google?.messageType?.find((m) => m.name === "Struct");
    // protoc's map entry naming, which Go's descriptor validation (grpcurl) insists on.
    expect(struct?.nestedType?.[0]?.name).toBe("FieldsEntry");
    expect(struct?.field?.[0]?.typeName).toBe("FieldsEntry");
    // Field names as written in the .proto, and proto3 optional marked as such.
    const invoke = main?.messageType?.find((m) => m.name === "InvokeCommandRequest");
    const expected = invoke?.field?.find((f) => f.number === 5);
    expect(expected?.name).toBe("expected_version");
    expect(expected?.proto3Optional).toBe(true);
  });

  it("answers the health check SERVING, and NOT_SERVING to health watchers once stopping", async () => {
    h = await startHarness();
    const health = new grpc.Client(h.gateway.address, grpc.credentials.createInsecure());
    const watchMethod = healthService["Watch"];
    if (!watchMethod) throw new Error("no Watch method");
    const call = health.makeServerStreamRequest(
      watchMethod.path,
      watchMethod.requestSerialize,
      watchMethod.responseDeserialize,
      { service: "doppel.v1.TwinService" },
    );
    call.on("error", () => {});
    const statuses: string[] = [];
    const serving = barrier();
    const notServing = barrier();
    call.on("data", (message: { status: string }) => {
      statuses.push(message.status);
      if (message.status === "SERVING") serving.resolve();
      if (message.status === "NOT_SERVING") notServing.resolve();
    });
    await serving.promise;
    const stopped = h.gateway.stop();
    await notServing.promise;
    call.cancel();
    health.close();
    await stopped;
    expect(statuses).toEqual(["SERVING", "NOT_SERVING"]);
  });

  it("refuses a message over maxMessageBytes with RESOURCE_EXHAUSTED and keeps serving", async () => {
    h = await startHarness({ gateway: { maxMessageBytes: 128 * 1024 } });
    const { error } = await rawUnary((cb) =>
      h.raw.reportState(
        {
          type: "thermostat",
          id: "t1",
          patch: { fields: { firmware: { stringValue: "x".repeat(200_000) } } },
        },
        cb,
      ),
    );
    expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await h.client.reportState({ type: "thermostat", id: "t1" }, { temperature: 20 });
    expect((await h.client.getTwin({ type: "thermostat", id: "t1" })).reported).toEqual({ temperature: 20 });
  });

  it("refuses a request nested beyond protobuf's recursion limit and keeps serving", async () => {
    h = await startHarness();
    const raw = new grpc.Client(h.gateway.address, grpc.credentials.createInsecure());
    const identity = (b: Buffer) => b;
    const error = await new Promise<grpc.ServiceError | null>((resolve) =>
      raw.makeUnaryRequest(
        "/doppel.v1.TwinService/InvokeCommand",
        identity,
        identity,
        deeplyNestedRequest(100_000),
        (e) => resolve(e),
      ),
    );
    raw.close();
    // The request's fault, not the server's: INVALID_ARGUMENT (see runtime/grpc/decoding.ts).
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.metadata.get("doppel-error-code")).toEqual(["INVALID_ARGUMENT"]);
    expect(await h.client.listTypes()).toHaveLength(1);
    expect((await h.test.twins.query("thermostat")).views).toEqual([]);
  });

  it("fails a command slower than the client's deadline with DEADLINE_EXCEEDED; the turn still completes", async () => {
    const deadlines: (number | undefined)[] = [];
    h = await startHarness({
      twins: [Slow],
      wrapApi: (api) =>
        overrideApi(api, {
          invoke: (ref, command, args, options?: InvokeOptions) => {
            deadlines.push(options?.deadline);
            return api.invoke(ref, command, args, options);
          },
        }),
    });
    // A real deadline, so a real wait: long enough that the call reaches the node before it passes
    // on a loaded machine (the assertions below need the node to have seen time remaining).
    const hurried = h.newClient({ timeoutMs: 2_000 });
    const slow = { type: "slow", id: "s1" };
    await expect(hurried.invoke(slow, "wait")).rejects.toThrow(DeadlineExceeded);
    // The gRPC deadline reached the API on the node's (manual) clock.
    const remaining = (deadlines[0] ?? 0) - h.test.clock.now();
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(2_000);

    gate.resolve();
    const next = await h.client.invoke(slow, "wait");
    expect(next).toEqual({ result: null, version: 2 });
  });

  it("ends open watches with UNAVAILABLE when stopping, and stops only once", async () => {
    h = await startHarness();
    await h.client.reportState({ type: "thermostat", id: "t1" }, { temperature: 20 });
    const watch = h.client.watch({ type: "thermostat", id: "t1" })[Symbol.asyncIterator]();
    expect((await watch.next()).done).toBe(false);
    const ending = watch.next().then(
      () => undefined,
      (error: unknown) => error,
    );
    await Promise.all([h.gateway.stop(), h.gateway.stop()]);
    expect(await ending).toBeInstanceOf(Unavailable);
    await expect(h.client.listTypes()).rejects.toThrow(Unavailable);
  });

  it("refuses bad options with InvalidArgument and a taken port with Unavailable", async () => {
    h = await startHarness();
    const base = {
      api: h.test.twins,
      types: () => [],
      maxMessageBytes: 1024 * 1024,
      logger: silentLogger(),
    };
    await expect(startGateway({ ...base, listen: "nonsense" })).rejects.toThrow(InvalidArgument);
    await expect(startGateway({ ...base, listen: "127.0.0.1:0", maxMessageBytes: 0 })).rejects.toThrow(
      InvalidArgument,
    );
    await expect(startGateway({ ...base, listen: h.gateway.address })).rejects.toThrow(Unavailable);
  });
});
