import { InvalidArgument, type JsonObject } from "doppel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { InvokeCommandRequest__Output } from "../../runtime/grpc/generated/doppel/v1/InvokeCommandRequest.ts";
import type { Struct__Output } from "../../runtime/grpc/generated/google/protobuf/Struct.ts";
import { loadContract } from "../../runtime/grpc/proto.ts";
import {
  durationToMs,
  jsonToStruct,
  jsonToValue,
  MAX_STRUCT_DEPTH,
  msToDuration,
  msToTimestamp,
  structToJson,
  timestampToMs,
  valueToJson,
} from "../../runtime/grpc/struct.ts";

/** Sends a struct through real protobuf encoding, as the gateway receives it. */
function overTheWire(args: JsonObject): Struct__Output | null {
  const method = loadContract().service.InvokeCommand;
  const bytes = method.requestSerialize({ type: "t", id: "i", command: "c", args: jsonToStruct(args) });
  return (method.requestDeserialize(bytes) as InvokeCommandRequest__Output).args;
}

const jsonObject = fc.dictionary(
  fc.string(),
  fc.jsonValue({ noUnicodeString: false }),
) as fc.Arbitrary<JsonObject>;

describe("struct conversion", () => {
  it("round-trips any JSON object through google.protobuf.Struct on the wire", () => {
    fc.assert(
      fc.property(jsonObject, (object) => {
        expect(structToJson(overTheWire(object), "args")).toEqual(object);
      }),
    );
  });

  it("keeps a __proto__ key as data instead of changing the prototype", () => {
    const decoded = structToJson(overTheWire(JSON.parse('{"__proto__":{"polluted":true}}')), "args");
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.keys(decoded)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  it("reads an unset struct as the empty object and an unset value as null", () => {
    expect(structToJson(null, "args")).toEqual({});
    expect(valueToJson(null, "result")).toBeNull();
  });

  it("encodes null, numbers, strings, booleans, lists and objects as their Value kinds", () => {
    expect(jsonToValue(null)).toEqual({ nullValue: "NULL_VALUE" });
    expect(jsonToValue(1.5)).toEqual({ numberValue: 1.5 });
    expect(jsonToValue("x")).toEqual({ stringValue: "x" });
    expect(jsonToValue(false)).toEqual({ boolValue: false });
    expect(jsonToValue([1])).toEqual({ listValue: { values: [{ numberValue: 1 }] } });
    expect(jsonToValue({ a: 1 })).toEqual({ structValue: { fields: { a: { numberValue: 1 } } } });
  });

  it("encodes what JSON cannot hold the way JSON.stringify would", () => {
    const sloppy = { gone: undefined, nan: Number.NaN, list: [undefined] } as unknown as JsonObject;
    expect(structToJson(overTheWire(sloppy), "state")).toEqual(JSON.parse(JSON.stringify(sloppy)));
  });

  it.each([
    ["a value with no kind", { fields: { a: {} } }, "args.a has no value set"],
    [
      "a NaN number",
      { fields: { a: { kind: "numberValue", numberValue: Number.NaN } } },
      "args.a is not a finite number",
    ],
    [
      "an infinite number in a list",
      {
        fields: {
          a: { kind: "listValue", listValue: { values: [{ kind: "numberValue", numberValue: Infinity }] } },
        },
      },
      "args.a[0] is not a finite number",
    ],
    ["a kind naming a missing field", { fields: { a: { kind: "stringValue" } } }, "args.a is not a string"],
    [
      "a list without values",
      { fields: { a: { kind: "listValue", listValue: null } } },
      "args.a is not a list",
    ],
    [
      "a nested struct that is not an object",
      { fields: { a: { kind: "structValue", structValue: 3 } } },
      "args.a is not a google.protobuf.Struct",
    ],
    ["fields that are not a map", { fields: [1] }, "args has malformed fields"],
  ])("refuses %s with InvalidArgument naming the path", (_what, struct, message) => {
    const decode = () => structToJson(struct as unknown as Struct__Output, "args");
    expect(decode).toThrow(InvalidArgument);
    expect(decode).toThrow(message);
  });

  it("refuses nesting deeper than its bound instead of overflowing the stack", () => {
    let value: unknown = { kind: "nullValue", nullValue: "NULL_VALUE" };
    for (let i = 0; i < MAX_STRUCT_DEPTH + 5; i++) {
      value = { kind: "structValue", structValue: { fields: { a: value } } };
    }
    expect(() => structToJson({ fields: { a: value } } as Struct__Output, "args")).toThrow(/nested deeper/);
  });
});

describe("timestamps and durations", () => {
  it("round-trips epoch milliseconds through Timestamp, before and after 1970", () => {
    fc.assert(
      fc.property(fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_000 }), (ms) => {
        const ts = msToTimestamp(ms);
        expect(ts.nanos).toBeGreaterThanOrEqual(0);
        expect(ts.nanos).toBeLessThan(1e9);
        expect(timestampToMs({ seconds: Number(ts.seconds), nanos: ts.nanos ?? 0 }, "at")).toBe(ms);
      }),
    );
  });

  it("reads an unset timestamp or duration as undefined", () => {
    expect(timestampToMs(null, "since")).toBeUndefined();
    expect(durationToMs(null, "interval")).toBeUndefined();
  });

  it("refuses out-of-range timestamps", () => {
    expect(() => timestampToMs({ seconds: 0, nanos: 1e9 }, "since")).toThrow(InvalidArgument);
    expect(() => timestampToMs({ seconds: -1, nanos: -1 }, "since")).toThrow(InvalidArgument);
    expect(() => timestampToMs({ seconds: 1e15, nanos: 0 }, "since")).toThrow(InvalidArgument);
  });

  it("round-trips durations and refuses negative or malformed ones", () => {
    const d = msToDuration(90_500);
    expect(d).toEqual({ seconds: 90, nanos: 500_000_000 });
    expect(durationToMs({ seconds: 90, nanos: 500_000_000 }, "interval")).toBe(90_500);
    expect(() => durationToMs({ seconds: -1, nanos: 0 }, "interval")).toThrow(/negative/);
    expect(() => durationToMs({ seconds: 1, nanos: 2e9 }, "interval")).toThrow(/malformed/);
  });
});
