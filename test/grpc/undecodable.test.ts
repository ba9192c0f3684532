import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./harness.ts";

/** Protobuf wire encoding, by hand: this test sends bytes no well-behaved client would. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
const field = (number: number, bytes: readonly number[]) => [
  ...varint((number << 3) | 2),
  ...varint(bytes.length),
  ...bytes,
];
const text = (number: number, value: string) => field(number, [...Buffer.from(value)]);

/** A `google.protobuf.Struct` `{"a": {"a": ... {"a": 1}}}` nested `depth` Structs deep. */
function nestedStruct(depth: number): number[] {
  // Value { number_value = 2 (double 1.0) }
  let value: number[] = [(2 << 3) | 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f];
  let struct: number[] = [];
  for (let level = 0; level < depth; level++) {
    struct = field(1, [...text(1, "a"), ...field(2, value)]); // Struct.fields map entry a → value
    value = field(5, struct); // Value { struct_value = 5 }
  }
  return struct;
}

const identity = (bytes: Buffer) => bytes;

describe("requests whose protobuf cannot be decoded", () => {
  let h: Harness;
  let raw: grpc.Client;
  beforeAll(async () => {
    h = await startHarness();
    raw = new grpc.Client(h.gateway.address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    raw.close();
    await h.stop();
  });

  /** Sends `bytes` as the request of `method`; resolves with the status the server answered. */
  function unary(method: string, bytes: readonly number[]): Promise<grpc.ServiceError | null> {
    return new Promise((resolve) => {
      raw.makeUnaryRequest(
        `/doppel.v1.TwinService/${method}`,
        identity,
        identity,
        Buffer.from(bytes),
        (error) => resolve(error),
      );
    });
  }

  function serverStream(method: string, bytes: readonly number[]): Promise<grpc.ServiceError | null> {
    return new Promise((resolve) => {
      const call = raw.makeServerStreamRequest(
        `/doppel.v1.TwinService/${method}`,
        identity,
        identity,
        Buffer.from(bytes),
      );
      call.on("data", () => {});
      call.on("error", (error: grpc.ServiceError) => resolve(error));
      call.on("end", () => resolve(null));
    });
  }

  const GARBAGE = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x0a, 0x80];

  it.each(["GetTwin", "ReportState", "InvokeCommand", "QueryTwins", "ListTypes"])(
    "answers %s with garbage bytes INVALID_ARGUMENT and doppel-error-code INVALID_ARGUMENT",
    async (method) => {
      const error = await unary(method, GARBAGE);
      expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details).toMatch(/^request is not a valid doppel\.v1\.\w+Request message/);
      expect(error?.metadata.get("doppel-error-code")).toEqual(["INVALID_ARGUMENT"]);
    },
  );

  it.each(["WatchTwin", "GetHistory", "GetTelemetry"])(
    "ends the %s stream with INVALID_ARGUMENT for garbage bytes",
    async (method) => {
      const error = await serverStream(method, GARBAGE);
      expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.metadata.get("doppel-error-code")).toEqual(["INVALID_ARGUMENT"]);
    },
  );

  it("answers a Struct nested 200 deep with INVALID_ARGUMENT, and a shallow one normally", async () => {
    const request = (depth: number) => [
      ...text(1, "thermostat"),
      ...text(2, "deep"),
      ...field(3, nestedStruct(depth)),
    ];
    const deep = await unary("ReportState", request(200));
    expect(deep?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(deep?.metadata.get("doppel-error-code")).toEqual(["INVALID_ARGUMENT"]);
    // The same encoding, shallow, is a well-formed report (refused by the twin's schema, not the decoder).
    const shallow = await unary("ReportState", request(1));
    expect(shallow?.code).not.toBe(grpc.status.INTERNAL);
    expect(shallow?.details ?? "").not.toMatch(/not a valid/);
    // The node keeps serving.
    expect((await h.client.listTypes()).map((t) => t.name)).toContain("thermostat");
  });
});
