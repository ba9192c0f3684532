import { generate, parse } from "coap-packet";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  InvalidArgument,
  NotFound,
  ResourceExhausted,
  Unauthenticated,
} from "../../../runtime/core/errors.ts";
import {
  coapFailureOf,
  decodePayload,
  errorDatagram,
  parseTarget,
  screenDatagram,
} from "../../../runtime/devices/coap/coap-message.ts";

const limits = { maxBytes: 1024, maxDepth: 8 };

describe("CoAP datagram screening", () => {
  it("never throws on arbitrary bytes, and whatever it passes on parses", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const screened = screenDatagram(Buffer.from(bytes), 2048);
        if (screened.pass) expect(() => parse(Buffer.from(bytes))).not.toThrow();
        else if (screened.reply) expect(() => parse(screened.reply!)).not.toThrow();
      }),
      { numRuns: 5000 },
    );
  });

  it("answers a request whose options do not parse with 4.02 on the same message id and token", () => {
    const screened = screenDatagram(Buffer.from([0x41, 0x02, 0x12, 0x34, 0xaa, 0xf1, 0x00]), 2048);
    expect(screened.pass).toBe(false);
    const reply = parse((screened as { reply: Buffer }).reply);
    expect({
      code: reply.code,
      ack: reply.ack,
      messageId: reply.messageId,
      token: reply.token.toString("hex"),
    }).toEqual({
      code: "4.02",
      ack: true,
      messageId: 0x1234,
      token: "aa",
    });
    expect(reply.payload.toString()).toMatch(/malformed CoAP message/);
  });

  it("refuses block-wise transfer, unknown critical options and formats other than JSON and CBOR", () => {
    const request = (options: { name: string; value: Buffer }[]) =>
      generate({
        code: "0.02",
        messageId: 1,
        token: Buffer.from([1]),
        confirmable: true,
        options: options as never,
      });
    const code = (options: { name: string; value: Buffer }[]) => {
      const screened = screenDatagram(request(options), 2048);
      return screened.pass ? "pass" : parse(screened.reply!).code;
    };
    expect(code([{ name: "Block1", value: Buffer.from([0x0e]) }])).toBe("4.13");
    expect(code([{ name: "Block2", value: Buffer.from([0x0e]) }])).toBe("4.02");
    expect(code([{ name: "65001", value: Buffer.from("x") }])).toBe("4.02");
    expect(code([{ name: "65000", value: Buffer.from("x") }])).toBe("pass"); // elective: ignored
    expect(code([{ name: "Content-Format", value: Buffer.from([42]) }])).toBe("4.15");
    expect(code([{ name: "Accept", value: Buffer.from([0]) }])).toBe("4.06");
    expect(code([{ name: "Content-Format", value: Buffer.from([60]) }])).toBe("pass");
    expect(code([])).toBe("pass");
  });

  it("drops what is not CoAP 1 or shorter than a header; resets a confirmable message with a bad token length", () => {
    expect(screenDatagram(Buffer.from([0x40, 0x01]), 2048)).toMatchObject({
      pass: false,
      reason: "shorter than a CoAP header",
    });
    expect(screenDatagram(Buffer.from([0x80, 0x01, 0, 1]), 2048)).not.toHaveProperty("reply");
    const reset = screenDatagram(Buffer.from([0x49, 0x01, 0, 9]), 2048) as { reply: Buffer };
    expect(parse(reset.reply)).toMatchObject({ reset: true, messageId: 9 });
  });
});

describe("CoAP requests and answers", () => {
  it("reads the twin, resource and query from the Uri-Path and Uri-Query options", () => {
    expect(parseTarget(["v1", "thermostat", "t-1", "reported"], ["token=dpd_x", "seq=5", "id=m1"])).toEqual({
      ref: { type: "thermostat", id: "t-1" },
      resource: "reported",
      token: "dpd_x",
      seq: "5",
      messageId: "m1",
    });
    expect(() => parseTarget(["v1", "thermostat", "t1"], [])).toThrow(NotFound);
    expect(() => parseTarget(["v1", "thermostat", "a.b", "reported"], [])).toThrow(InvalidArgument);
    expect(() => parseTarget(["v1", "thermostat", "t1", "desired"], ["colour=red"])).toThrow(
      /unknown query parameter/,
    );
    expect(() => parseTarget(["v1", "thermostat", "t1", "desired"], ["seq=1", "seq=2"])).toThrow(/twice/);
  });

  it("decodes CBOR within JSON's data model and limits", () => {
    expect(decodePayload(Buffer.from([0xa1, 0x61, 0x74, 0x18, 0x15]), "cbor", "patch", limits)).toEqual({
      t: 21,
    });
    expect(() => decodePayload(Buffer.from([0xa1, 0x61, 0x74, 0x42, 1, 2]), "cbor", "patch", limits)).toThrow(
      InvalidArgument,
    );
    expect(() => decodePayload(Buffer.from([0x82, 1, 2]), "cbor", "patch", limits)).toThrow(/JSON object/);
    expect(() => decodePayload(Buffer.alloc(2000), "cbor", "patch", limits)).toThrow(/limit is 1024/);
    const deep = Buffer.from([...Array(50).fill(0x81), 0x01]);
    expect(() =>
      decodePayload(Buffer.concat([Buffer.from([0xa1, 0x61, 0x74]), deep]), "cbor", "patch", limits),
    ).toThrow(/nested deeper/);
  });

  it("maps Doppel's codes to CoAP's, with Max-Age from the retry hint", () => {
    expect(coapFailureOf(new InvalidArgument("bad")).code).toBe("4.00");
    expect(coapFailureOf(new InvalidArgument("big", { size: 2, limit: 1 })).code).toBe("4.13");
    expect(coapFailureOf(new Unauthenticated("who")).code).toBe("4.01");
    expect(coapFailureOf(new ResourceExhausted("busy", { retryAfterMs: 2500 }))).toMatchObject({
      code: "5.03",
      maxAgeSeconds: 3,
    });
    expect(coapFailureOf(new Error("boom")).code).toBe("5.00");
    const reply = parse(
      errorDatagram(
        { messageId: 5, token: Buffer.from([9]), confirmable: false },
        { code: "5.03", diagnostic: "x", maxAgeSeconds: 3 },
      ),
    );
    expect(reply).toMatchObject({ code: "5.03", ack: false, confirmable: false, messageId: 5 });
    expect(reply.options).toContainEqual({ name: "Max-Age", value: Buffer.from([0, 3]) });
  });
});
