import { describe, expect, it } from "vitest";
import { InvalidArgument } from "../../runtime/core/errors.ts";
import { parseRef, validateId, validateType } from "../../runtime/core/ids.ts";

describe("twin ids", () => {
  it("accepts the documented charset", () => {
    expect(validateId("t-001_a:b")).toBe("t-001_a:b");
    expect(validateType("thermostat")).toBe("thermostat");
    expect(parseRef("pump/p1")).toEqual({ type: "pump", id: "p1" });
  });

  it.each([
    ["a.b", "'.' at position 2 is not allowed"],
    ["a*", "'*' at position 2"],
    ["a>", "'>' at position 2"],
    ["a/b", "'/' at position 2"],
    ["a b", "whitespace U+0020 at position 2"],
    ["a\u0001", "control character U+0001 at position 2"],
    ["a\u0000b", "control character U+0000 at position 2"],
    ["", "twin id is empty"],
    ["x".repeat(129), "129 characters long; the limit is 128"],
    ["-a", "'-' at position 1 cannot start a twin id"],
    ["a+b", "'+' at position 2"],
    ["a#", "'#' at position 2"],
    ["$SYS", "'$' at position 1"],
  ])("refuses id %j with a precise error", (id, message) => {
    expect(() => validateId(id)).toThrow(InvalidArgument);
    expect(() => validateId(id)).toThrow(message);
  });

  it("refuses references without exactly type/id", () => {
    expect(() => parseRef("pump")).toThrow("expected 'type/id'");
    expect(() => parseRef("pump/a/b")).toThrow("'/' at position 2");
    expect(() => parseRef("9pump/a")).toThrow("twin type");
  });
});
