import { describe, expect, it } from "vitest";
import { InvalidArgument } from "../../../runtime/core/errors.ts";
import {
  edgeOfRegistrationSubject,
  parseRegistrationReply,
  parseSourceRegistration,
  sourceRegistrationSubject,
} from "../../../runtime/devices/edge/source-registration.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const refusal = (run: () => unknown): InvalidArgument => {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidArgument) return error;
    throw error;
  }
  throw new Error("accepted");
};

describe("source registration requests", () => {
  it("takes { kind, stream } of a thin or thick edge", () => {
    expect(parseSourceRegistration(bytes('{"kind":"thin","stream":"DOPPEL_EDGE"}'))).toEqual({
      kind: "thin",
      stream: "DOPPEL_EDGE",
    });
    expect(parseSourceRegistration(bytes('{"kind":"thick","stream":"DOPPEL_EDGE_LOG"}'))).toEqual({
      kind: "thick",
      stream: "DOPPEL_EDGE_LOG",
    });
  });

  it("refuses anything else with an error naming what is wrong", () => {
    expect(refusal(() => parseSourceRegistration(bytes("{nope")))).toMatchObject({
      message: expect.stringMatching(/must be JSON/),
    });
    expect(refusal(() => parseSourceRegistration(bytes('["thin"]'))).message).toMatch(/must be an object/);
    expect(refusal(() => parseSourceRegistration(bytes('{"kind":"thin"}'))).details).toEqual({
      field: "stream",
    });
    expect(refusal(() => parseSourceRegistration(bytes('{"kind":"warm","stream":"S"}'))).message).toBe(
      'kind must be "thin" or "thick", not "warm"',
    );
    expect(refusal(() => parseSourceRegistration(bytes('{"kind":"thin","stream":"A.B"}'))).details).toEqual({
      field: "stream",
    });
    expect(
      refusal(() => parseSourceRegistration(bytes('{"kind":"thin","stream":"S","edge":"plant-b"}'))),
    ).toMatchObject({ message: 'a source registration has no field "edge"', details: { field: "edge" } });
  });

  it("takes the edge from the subject, and only a valid edge name", () => {
    expect(sourceRegistrationSubject("plant-a")).toBe("doppel.edge.plant-a.register");
    expect(edgeOfRegistrationSubject("doppel.edge.plant-a.register")).toBe("plant-a");
    expect(refusal(() => edgeOfRegistrationSubject("doppel.edge.plant-a.rpc")).message).toMatch(
      /not a source registration subject/,
    );
    expect(refusal(() => edgeOfRegistrationSubject("doppel.edge.9lives.register")).details).toEqual({
      field: "edge",
    });
  });
});

describe("registrar replies", () => {
  it("takes a position { changed, seq, sourceError? } or an error { code, message, details? }", () => {
    expect(parseRegistrationReply(bytes('{"ok":{"changed":true,"seq":0}}'))).toEqual({
      ok: { changed: true, seq: 0 },
    });
    expect(
      parseRegistrationReply(bytes('{"ok":{"changed":false,"seq":42,"sourceError":"stalled","later":1}}')),
    ).toEqual({ ok: { changed: false, seq: 42, sourceError: "stalled" } });
    expect(
      parseRegistrationReply(bytes('{"error":{"code":"UNAVAILABLE","message":"busy","details":{"n":64}}}')),
    ).toEqual({ error: { code: "UNAVAILABLE", message: "busy", details: { n: 64 } } });
  });

  it("refuses a seq the edge must not trim up to, and any other shape, naming the field", () => {
    for (const seq of ["-1", "1.5", '"7"', "null", "9007199254740993", "1e400"])
      expect(
        refusal(() => parseRegistrationReply(bytes(`{"ok":{"changed":false,"seq":${seq}}}`))),
      ).toMatchObject({
        details: { field: "ok.seq" },
      });
    expect(refusal(() => parseRegistrationReply(bytes('{"ok":{"seq":3}}'))).details).toEqual({
      field: "ok.changed",
    });
    expect(
      refusal(() => parseRegistrationReply(bytes('{"ok":{"changed":true,"seq":3,"sourceError":5}}'))).details,
    ).toEqual({ field: "ok.sourceError" });
    expect(refusal(() => parseRegistrationReply(bytes("{}"))).details).toEqual({ field: "ok" });
    expect(refusal(() => parseRegistrationReply(bytes('{"error":{"code":"X"}}'))).details).toEqual({
      field: "error",
    });
    expect(
      refusal(() => parseRegistrationReply(bytes('{"error":{"code":"X","message":"m","details":[]}}')))
        .details,
    ).toEqual({ field: "error.details" });
    expect(refusal(() => parseRegistrationReply(bytes("[1]"))).message).toMatch(/must be an object/);
    expect(refusal(() => parseRegistrationReply(bytes("nope"))).message).toMatch(/must be JSON/);
  });
});
