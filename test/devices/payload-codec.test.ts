import { describe, expect, it } from "vitest";
import { InvalidArgument } from "../../runtime/core/errors.ts";
import {
  decodeCommandReply,
  decodeDeviceState,
  decodeReported,
  decodeTelemetry,
  deviceMessage,
  encodeDeviceState,
  encodeProtobuf,
  encodingOf,
  PROTOBUF_TYPE,
} from "../../runtime/devices/payload-codec.ts";

const limits = { maxBytes: 64 * 1024, maxDepth: 32 };
const bytes = (text: string) => new TextEncoder().encode(text);

describe("device payload codecs", () => {
  it("chooses protobuf only when the message says Content-Type: application/x-protobuf", () => {
    expect(encodingOf(undefined)).toBe("json");
    expect(encodingOf(new Map())).toBe("json");
    expect(encodingOf(new Map([["Content-Type", "application/json"]]))).toBe("json");
    expect(encodingOf(new Map([["Content-Type", `${PROTOBUF_TYPE}; proto=doppel.device.v1.Reported`]]))).toBe(
      "protobuf",
    );
  });

  it("round-trips every kind of JSON value through protobuf Reported, including zero, false, empty and null", () => {
    const patch = {
      temperature: 0,
      heating: false,
      firmware: "",
      gone: null,
      nested: { a: [1, "two", true, null, { deep: -1.5 }] },
    };
    expect(decodeReported(encodeProtobuf("Reported", patch), "protobuf", limits)).toEqual(patch);
  });

  it("decodes protobuf telemetry into samples, at_ms 0 meaning 'now'", () => {
    const data = encodeProtobuf("Telemetry", {
      samples: [{ at: 1_000, metrics: { t: 1.5 } }, { metrics: { t: 2 } }],
    });
    expect(decodeTelemetry(data, "protobuf", limits)).toEqual({
      samples: [{ at: 1_000, metrics: { t: 1.5 } }, { metrics: { t: 2 } }],
    });
  });

  it("refuses payloads that do not decode, are too large, or nest too deeply, with InvalidArgument", () => {
    expect(() => decodeReported(bytes("{nope"), "json", limits)).toThrow("reported patch is not valid JSON");
    expect(() => decodeReported(bytes("[]"), "json", limits)).toThrow(InvalidArgument);
    expect(() => decodeReported(new Uint8Array([0x0a, 0x05, 0xff]), "protobuf", limits)).toThrow(
      /not a valid protobuf doppel\.device\.v1\.Reported/,
    );
    expect(() => decodeReported(new Uint8Array(70_000), "protobuf", limits)).toThrow("the limit is 65536");
    let deep: Record<string, unknown> = { x: 1 };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    expect(() => decodeReported(encodeProtobuf("Reported", deep as never), "protobuf", limits)).toThrow(
      "nested deeper than 32 levels",
    );
    expect(() => decodeTelemetry(new Uint8Array([0xff, 0xff]), "protobuf", limits)).toThrow(InvalidArgument);
  });

  it("encodes sync replies as protobuf DeviceState for protobuf devices", () => {
    const state = { version: 7, reported: { t: 20 }, desired: { heating: true }, delta: { heating: true } };
    const data = encodeDeviceState(state, "protobuf");
    expect(decodeDeviceState(data, limits)).toEqual(state);
    expect(JSON.parse(new TextDecoder().decode(encodeDeviceState(state, "json")))).toEqual(state);
  });

  it("decodes a device's command reply in either encoding", () => {
    expect(decodeCommandReply(bytes('{"result":{"ok":true}}'), "json", limits)).toEqual({
      result: { ok: true },
    });
    expect(
      decodeCommandReply(encodeProtobuf("CommandReply", { result: { ok: 1 } }), "protobuf", limits),
    ).toEqual({
      result: { ok: 1 },
    });
    expect(
      decodeCommandReply(
        encodeProtobuf("CommandReply", { error: { code: "FAILED_PRECONDITION", message: "busy" } }),
        "protobuf",
        limits,
      ),
    ).toEqual({ error: { code: "FAILED_PRECONDITION", message: "busy" } });
  });

  it("loads every message type of proto/doppel/device/v1/device.proto", () => {
    for (const name of [
      "Value",
      "Reported",
      "Sample",
      "Telemetry",
      "DeviceState",
      "Command",
      "CommandReply",
      "Error",
    ]) {
      expect(deviceMessage(name).fullName).toBe(`.doppel.device.v1.${name}`);
    }
  });
});
