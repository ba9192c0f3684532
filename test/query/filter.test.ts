import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { InvalidArgument } from "../../runtime/core/errors.ts";
import type { Json, JsonObject } from "../../runtime/core/json.ts";
import { evaluate, FILTER_LIMITS, type FilterTarget, parseFilter } from "../../runtime/query/filter.ts";
import { Lexer } from "../../runtime/query/filter-lexer.ts";

/**
 * How much lexing `run` does: tokens scanned and tokens looked at. Parsing is linear when each
 * token is scanned once and looked at a bounded number of times, which a count shows without a
 * clock (a backtracking or quadratic parser rescans).
 */
function lexerWork(run: () => void): { scans: number; peeks: number } {
  const scan = vi.spyOn(Lexer.prototype as unknown as { scan: () => unknown }, "scan");
  const peek = vi.spyOn(Lexer.prototype, "peek");
  try {
    run();
    return { scans: scan.mock.calls.length, peeks: peek.mock.calls.length };
  } finally {
    scan.mockRestore();
    peek.mockRestore();
  }
}

/** At most one scan per character (plus end of input), and a few looks at each token. */
function expectLinear(text: string, work: { scans: number; peeks: number }): void {
  const tokensAtMost = [...text].length + 1;
  expect(work.scans, "tokens scanned").toBeLessThanOrEqual(tokensAtMost);
  expect(work.peeks, "tokens looked at").toBeLessThanOrEqual(8 * tokensAtMost);
}

function target(fields: Partial<FilterTarget> = {}): FilterTarget {
  return {
    type: "thermostat",
    id: "t-1",
    version: 7,
    state: {},
    reported: {},
    desired: {},
    delta: {},
    ...fields,
  };
}

const twin = target({
  state: { label: "Kitchen", "serial-no": "SN-9", "0": "zero key" },
  reported: {
    temperature: 31,
    humidity: 0.45,
    mode: "eco",
    on: true,
    off: false,
    nothing: null,
    tags: ["a", "b", "c"],
    readings: [{ v: 1 }, { v: 2, "odd key": "yes" }],
    nested: { deep: { value: -3 } },
    quote: 'it\'s "quoted"',
    unicode: "é😀",
  },
  desired: { mode: "eco", temperature: 21 },
  delta: { temperature: 21 },
});

function matches(text: string, on: FilterTarget = twin): boolean {
  return parseFilter(text).matches(on);
}

/** Parses `text`, expecting it to fail, and returns the error. */
function parseError(text: string): InvalidArgument {
  try {
    parseFilter(text);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgument);
    return error as InvalidArgument;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be rejected`);
}

describe("filter comparisons", () => {
  it.each([
    ["reported.temperature == 31", true],
    ["reported.temperature == 30", false],
    ["reported.temperature != 30", true],
    ["reported.temperature != 31", false],
    ["reported.temperature < 32", true],
    ["reported.temperature < 31", false],
    ["reported.temperature <= 31", true],
    ["reported.temperature <= 30", false],
    ["reported.temperature > 30", true],
    ["reported.temperature > 31", false],
    ["reported.temperature >= 31", true],
    ["reported.temperature >= 32", false],
  ])("evaluates %s to %s", (text, expected) => {
    expect(matches(text)).toBe(expected);
  });

  it("accepts a literal on the left-hand side", () => {
    expect(matches("30 < reported.temperature")).toBe(true);
    expect(matches("'eco' == reported.mode")).toBe(true);
  });

  it("compares two paths with each other", () => {
    expect(matches("reported.mode == desired.mode")).toBe(true);
    expect(matches("reported.temperature > desired.temperature")).toBe(true);
    expect(matches("delta.temperature == desired.temperature")).toBe(true);
  });

  it("compares strings by code unit order", () => {
    expect(matches("reported.mode < 'fast'")).toBe(true);
    expect(matches("reported.mode > 'Z'")).toBe(true);
    expect(matches("reported.mode >= 'eco'")).toBe(true);
    expect(matches("reported.unicode > 'z'")).toBe(true);
  });

  it("treats ordering comparisons between different kinds of values as false", () => {
    expect(matches("reported.temperature < 'z'")).toBe(false);
    expect(matches("reported.temperature > '0'")).toBe(false);
    expect(matches("reported.on > false")).toBe(false);
    expect(matches("reported.nothing <= null")).toBe(false);
    expect(matches("reported.tags > 0")).toBe(false);
    expect(matches("reported.nested >= reported.nested")).toBe(false);
  });

  it("compares arrays and objects structurally with ==", () => {
    const other = target({
      reported: { a: { x: 1, y: [1, 2] }, b: { y: [1, 2], x: 1 }, c: { x: 1, y: [2, 1] } },
    });
    expect(matches("reported.a == reported.b", other)).toBe(true);
    expect(matches("reported.a == reported.c", other)).toBe(false);
    expect(matches("reported.a != reported.c", other)).toBe(true);
  });

  it("compares booleans and null for equality", () => {
    expect(matches("reported.on == true")).toBe(true);
    expect(matches("reported.off == false")).toBe(true);
    expect(matches("reported.nothing == null")).toBe(true);
    expect(matches("reported.on == null")).toBe(false);
    expect(matches("reported.nothing != null")).toBe(false);
  });

  it("reads version, id and type from the twin", () => {
    expect(matches("version == 7")).toBe(true);
    expect(matches("version >= 5 and version < 8")).toBe(true);
    expect(matches("id == 't-1'")).toBe(true);
    expect(matches('type == "thermostat"')).toBe(true);
    expect(matches("type in ['pump', 'thermostat']")).toBe(true);
  });

  it("compares the whole state object when the path has no steps", () => {
    expect(matches("delta == delta")).toBe(true);
    expect(matches("delta == desired")).toBe(false);
    expect(matches("exists(state)")).toBe(true);
  });
});

describe("filter logic", () => {
  it("combines conditions with and, or and not", () => {
    expect(matches("reported.on == true and reported.mode == 'eco'")).toBe(true);
    expect(matches("reported.on == true and reported.mode == 'fast'")).toBe(false);
    expect(matches("reported.on == false or reported.mode == 'eco'")).toBe(true);
    expect(matches("reported.on == false or reported.mode == 'fast'")).toBe(false);
    expect(matches("not reported.on == false")).toBe(true);
    expect(matches("not reported.on == true")).toBe(false);
  });

  it("binds and tighter than or", () => {
    // true or (false and false) = true; (true or false) and false would be false.
    expect(matches("version == 7 or version == 1 and version == 2")).toBe(true);
    // (false and false) or true = true.
    expect(matches("version == 1 and version == 2 or version == 7")).toBe(true);
    expect(parseFilter("id == 'a' or id == 'b' and id == 'c'").ast).toMatchObject({
      kind: "or",
      operands: [{ kind: "compare" }, { kind: "and" }],
    });
  });

  it("lets parentheses override precedence", () => {
    expect(matches("(version == 7 or version == 1) and version == 2")).toBe(false);
    expect(matches("((version == 7))")).toBe(true);
    expect(matches("not (version == 7 or version == 1)")).toBe(false);
  });

  it("binds not tighter than and", () => {
    // (not false) and true
    expect(matches("not version == 1 and version == 7")).toBe(true);
    expect(matches("not not version == 7")).toBe(true);
  });

  it("accepts &&, || and ! as synonyms of and, or and not", () => {
    expect(matches("version == 7 && id == 't-1'")).toBe(true);
    expect(matches("version == 1 || id == 't-1'")).toBe(true);
    expect(matches("!(version == 1)")).toBe(true);
    expect(matches("!version == 7")).toBe(false);
    expect(matches("!!exists(reported.on)")).toBe(true);
    expect(matches("!exists(reported.missing)&&version==7")).toBe(true);
  });

  it("flattens chains of the same operator into one node", () => {
    const ast = parseFilter("version == 1 or version == 2 or version == 3").ast;
    expect(ast.kind).toBe("or");
    expect(ast.kind === "or" && ast.operands.length).toBe(3);
  });

  it("treats keywords case-insensitively", () => {
    expect(matches("version == 7 AND Not exists(reported.missing) OR FALSE == reported.on")).toBe(true);
    expect(matches("EXISTS(reported.nothing)")).toBe(true);
    expect(matches("reported.mode IN ['eco']")).toBe(true);
    expect(matches("reported.on == TRUE and reported.nothing == Null")).toBe(true);
    expect(matches("Reported.temperature > 30 and VERSION == 7")).toBe(true);
  });

  it("keeps field names case-sensitive", () => {
    expect(matches("exists(reported.Temperature)")).toBe(false);
  });

  it("allows keywords as field names after a dot", () => {
    const other = target({ reported: { and: 1, in: [2], not: { exists: true } } });
    expect(matches("reported.and == 1 and reported.in[0] == 2 and reported.not.exists == true", other)).toBe(
      true,
    );
  });
});

describe("filter exists", () => {
  it("is true for present fields, including null, false and empty values", () => {
    const other = target({ reported: { n: null, f: false, z: 0, s: "", a: [], o: {} } });
    for (const key of ["n", "f", "z", "s", "a", "o"])
      expect(matches(`exists(reported.${key})`, other)).toBe(true);
  });

  it("is false for absent keys, indexes out of range and steps into scalars", () => {
    expect(matches("exists(reported.missing)")).toBe(false);
    expect(matches("exists(reported.tags[3])")).toBe(false);
    expect(matches("exists(reported.temperature.x)")).toBe(false);
    expect(matches("exists(reported.nothing.x)")).toBe(false);
    expect(matches("exists(reported.tags.length)")).toBe(false);
    expect(matches("exists(reported.nested[0])")).toBe(false);
  });

  it("never sees inherited properties", () => {
    expect(matches("exists(reported.constructor)")).toBe(false);
    expect(matches('exists(reported."__proto__")')).toBe(false);
    expect(matches("exists(reported.hasOwnProperty)")).toBe(false);
    expect(matches("exists(reported.tags.map)")).toBe(false);
  });

  it("sees an own __proto__ key from parsed JSON", () => {
    const other = target({ reported: JSON.parse('{"__proto__": {"x": 1}}') as JsonObject });
    expect(matches('reported."__proto__".x == 1', other)).toBe(true);
  });
});

describe("filter missing fields", () => {
  it.each([
    ["reported.missing == 5", false],
    ["reported.missing == null", false],
    ["reported.missing == reported.alsoMissing", false],
    ["reported.missing != 5", true],
    ["reported.missing != null", true],
    ["reported.missing != reported.alsoMissing", true],
    ["reported.missing < 5", false],
    ["reported.missing <= 5", false],
    ["reported.missing > 5", false],
    ["reported.missing >= 5", false],
    ["reported.missing in [5, null]", false],
    ["exists(reported.missing)", false],
    ["not exists(reported.missing)", true],
    ["reported.temperature.x == 31", false],
    ["reported.tags[9] != 'a'", true],
  ])("evaluates %s to %s", (text, expected) => {
    expect(matches(text)).toBe(expected);
  });
});

describe("filter in", () => {
  it("is true when the value equals one of the literals", () => {
    expect(matches("reported.mode in ['fast', 'eco']")).toBe(true);
    expect(matches("reported.temperature in [30, 31, 32]")).toBe(true);
    expect(matches("reported.nothing in [null]")).toBe(true);
    expect(matches("reported.on in [true]")).toBe(true);
  });

  it("is false when no literal matches, including for values of other kinds", () => {
    expect(matches("reported.mode in ['fast', 'slow']")).toBe(false);
    expect(matches("reported.temperature in ['31']")).toBe(false);
    expect(matches("reported.tags in ['a']")).toBe(false);
  });

  it("accepts a single value and extra whitespace", () => {
    expect(matches("reported.mode in [ 'eco' ]")).toBe(true);
    expect(parseFilter("version in [1]").ast).toEqual({
      kind: "in",
      path: { kind: "path", root: "version", segments: [] },
      values: [1],
    });
  });
});

describe("filter literals", () => {
  it("decodes escapes in double-quoted and single-quoted strings", () => {
    expect(matches(`reported.quote == "it's \\"quoted\\""`)).toBe(true);
    expect(matches(`reported.quote == 'it\\'s "quoted"'`)).toBe(true);
    expect(matches(`reported.unicode == "\\u00e9\\ud83d\\ude00"`)).toBe(true);
    expect(matches(`reported.unicode == 'é😀'`)).toBe(true);
  });

  it("decodes the JSON escapes", () => {
    const other = target({ reported: { s: "a\n\t\\\"'/\r\b\f" } });
    expect(matches(`reported.s == "a\\n\\t\\\\\\"\\'\\/\\r\\b\\f"`, other)).toBe(true);
  });

  it("parses negative, fractional and exponent numbers", () => {
    expect(matches("reported.nested.deep.value == -3")).toBe(true);
    expect(matches("reported.nested.deep.value > -3.5")).toBe(true);
    expect(matches("reported.humidity == 4.5e-1")).toBe(true);
    expect(matches("reported.humidity == 45E-2")).toBe(true);
    expect(matches("reported.temperature == 3.1e+1")).toBe(true);
    expect(matches("reported.temperature < 1e2")).toBe(true);
    expect(matches("reported.nested.deep.value==-3")).toBe(true);
  });

  it("records literals in the tree as JSON values", () => {
    expect(parseFilter("state.a in [-1.5e3, 'x', true, false, null]").ast).toMatchObject({
      values: [-1500, "x", true, false, null],
    });
  });
});

describe("filter paths", () => {
  it("steps into quoted keys and array indexes", () => {
    expect(matches(`state."serial-no" == 'SN-9'`)).toBe(true);
    expect(matches(`state."0" == 'zero key'`)).toBe(true);
    expect(matches("reported.tags[0] == 'a' and reported.tags[2] == 'c'")).toBe(true);
    expect(matches("reported.readings[1].v == 2")).toBe(true);
    expect(matches(`reported.readings[1]."odd key" == "yes"`)).toBe(true);
    expect(matches("reported.nested.deep.value < 0")).toBe(true);
  });

  it("records paths as a root and segments", () => {
    expect(parseFilter(`exists(Reported.readings[1]."odd key")`).ast).toEqual({
      kind: "exists",
      path: { kind: "path", root: "reported", segments: ["readings", 1, "odd key"] },
    });
  });

  it("does not index objects with numbers or arrays with names", () => {
    expect(matches("exists(state[0])")).toBe(false);
    expect(matches(`exists(reported.tags."0")`)).toBe(false);
  });

  it("allows whitespace between the steps of a path", () => {
    expect(matches("reported . tags [ 1 ] == 'b'")).toBe(true);
  });
});

describe("filter syntax errors", () => {
  it.each([
    ["reported.temperature > ", "expected a value after '>' but found end of input", 24],
    [
      "temperature > 30",
      "unknown field root 'temperature' (use state., reported., desired., delta., version, id or type)",
      1,
    ],
    ['type == "abc', "unterminated string", 9],
    ["type == 'abc\\'", "unterminated string", 9],
    ["id>1)", "unexpected ')'", 5],
    ["reported.a = 1", "'=' is not an operator; did you mean '=='?", 12],
    ["version.major == 1", "'version' has no fields", 8],
    ["id[0] == 'a'", "'id' has no fields", 3],
    ["type.x == 'a'", "'type' has no fields", 5],
    ["1 == 1", "compares two literal values; at least one side must be a field path", 1],
    ["'a' in ['a']", "the left side of 'in' must be a field path", 1],
    [
      "state.a",
      "expected an operator (==, !=, <, <=, >, >= or in) after 'state.a' but found end of input",
      8,
    ],
    ["state.a == 1 state.b == 2", "expected 'and', 'or' or end of input after '1' but found 'state'", 14],
    ["(state.a == 1", "expected ')' to close the '(' at column 1 but found end of input", 14],
    ["state.a == 1 and", "expected a condition after 'and' but found end of input", 17],
    ["or state.a == 1", "expected a condition but found 'or'", 1],
    ["not )", "expected a condition after 'not' but found ')'", 5],
    ["()", "expected a condition after '(' but found ')'", 2],
    ["state.a == )", "expected a value after '==' but found ')'", 12],
    ["exists state.a", "expected '(' after 'exists' but found 'state'", 8],
    ["exists(1)", "exists() takes a field path, not a literal value", 8],
    ["exists(state.a", "expected ')' after 'state.a' but found end of input", 15],
    ["state.a in []", "expected a literal value (number, string, true, false or null) after '['", 13],
    ["state.a in [1,]", "expected a literal value (number, string, true, false or null) after ','", 15],
    [
      "state.a in [state.b]",
      "expected a literal value (number, string, true, false or null) after '[' but found 'state'",
      13,
    ],
    ["state.a in [1 2]", "expected ',' or ']' after '1' but found '2'", 15],
    ["state.a in 1", "expected '[' after 'in' but found '1'", 12],
    ["state.0 == 1", "expected a field name after '.' but found '0'", 7],
    [
      "state.'a' == 1",
      "expected a field name after '.' but found ''a'' (quote field names with double quotes)",
      7,
    ],
    ["state.a[-1] == 1", "expected an array index (a non-negative integer) after '[' but found '-1'", 9],
    ["state.a[1.5] == 1", "expected an array index", 9],
    ["state.a[1 == 1", "expected ']' after '1' but found '=='", 11],
    [
      "state.serial-no == 1",
      `unexpected character '-' (field names with other characters must be double-quoted: reported."serial-no")`,
      13,
    ],
    ["state.a == - 1", "unexpected character '-'", 12],
    ["state.a & state.b", "'&' is not an operator; did you mean '&&'?", 9],
    ["state.a | state.b", "'|' is not an operator; did you mean '||'?", 9],
    ["state.a == 1 # comment", "unexpected character '#'", 14],
    ["state.a == 1\u0007", "unexpected character U+0007", 13],
    ["state.a == 01", "numbers cannot have leading zeros", 12],
    ["state.a == 1.", "expected a digit after '.' in a number", 13],
    ["state.a == 1e+", "expected digits in the exponent of a number", 12],
    ["state.a == 12abc", "invalid number '12abc'", 12],
    ["state.a == 1e400", "number '1e400' is out of range", 12],
    ["state.a == 'a\\qb'", "unknown escape '\\q' in a string", 14],
    ["state.a == '\\u12g4'", "'\\u' must be followed by four hex digits", 13],
    ["state.a == 'line\nbreak'", "control character U+000A in a string", 17],
    ["state.a == '😀😀' and nope == 1", "unknown field root 'nope'", 21],
  ])("rejects %j with %j at column %i", (text, message, column) => {
    expect(() => parseFilter(text)).toThrow(InvalidArgument);
    expect(() => parseFilter(text)).toThrow(`filter: at column ${column}: ${message}`);
    const error = parseError(text);
    expect(error.details?.["position"]).toBe(column);
    expect(error.details?.["expression"]).toBe(text);
    expect(error.code).toBe("INVALID_ARGUMENT");
  });

  it.each(["", "   ", "\n\t"])("rejects the empty expression %j", (text) => {
    expect(() => parseFilter(text)).toThrow(InvalidArgument);
    expect(() => parseFilter(text)).toThrow(/^filter: empty expression$/);
    expect(parseError(text).details?.["position"]).toBe(1);
  });

  it("rejects values that are not strings", () => {
    expect(() => parseFilter(42 as unknown as string)).toThrow(InvalidArgument);
  });
});

describe("filter limits", () => {
  it("accepts text of exactly 4096 characters and rejects longer text", () => {
    const prefix = "state.a == '";
    const exact = `${prefix}${"x".repeat(FILTER_LIMITS.maxLength - prefix.length - 1)}'`;
    expect(exact).toHaveLength(4096);
    expect(parseFilter(exact).matches(target({ state: { a: "x".repeat(4083) } }))).toBe(true);
    const long = `${prefix}${"x".repeat(5000)}'`;
    expect(() => parseFilter(long)).toThrow(InvalidArgument);
    expect(() => parseFilter(long)).toThrow("filter: longer than the limit of 4096 characters");
    expect(parseError(long).details?.["position"]).toBe(4097);
    expect(() => parseFilter("x".repeat(10_000_000))).toThrow("longer than the limit of 4096 characters");
  });

  it("counts the length in characters, not UTF-16 code units", () => {
    const text = `state.a == '${"😀".repeat(4000)}'`;
    expect(text.length).toBeGreaterThan(4096);
    expect(() => parseFilter(text)).not.toThrow();
    expect(() => parseFilter(`state.a == '${"😀".repeat(4084)}'`)).toThrow("longer than the limit");
  });

  it("accepts 32 levels of parentheses and rejects 33", () => {
    const nested = (n: number) => `${"(".repeat(n)}version == 7${")".repeat(n)}`;
    expect(matches(nested(32))).toBe(true);
    expect(() => parseFilter(nested(33))).toThrow(InvalidArgument);
    expect(() => parseFilter(nested(33))).toThrow(
      "filter: at column 33: nested deeper than 32 levels of parentheses and 'not'",
    );
    expect(parseError(nested(33)).details?.["position"]).toBe(33);
  });

  it("counts not towards the nesting limit", () => {
    expect(matches(`${"not ".repeat(32)}version == 7`)).toBe(true);
    expect(() => parseFilter(`${"not ".repeat(33)}version == 7`)).toThrow(
      "filter: at column 129: nested deeper than 32 levels",
    );
    expect(() => parseFilter(`${"!(".repeat(17)}version == 7${")".repeat(17)}`)).toThrow(
      "filter: at column 33: nested deeper than 32 levels",
    );
  });

  it("does not count sibling parentheses towards the nesting limit", () => {
    const siblings = Array.from({ length: 40 }, () => "(version == 7)").join(" and ");
    expect(matches(siblings)).toBe(true);
  });

  it("accepts 128 conditions and rejects 129", () => {
    const conditions = (n: number) => Array.from({ length: n }, () => "state.a == 1").join(" or ");
    expect(() => parseFilter(conditions(128))).not.toThrow();
    expect(() => parseFilter(conditions(129))).toThrow(InvalidArgument);
    expect(() => parseFilter(conditions(129))).toThrow(
      "filter: at column 2049: more than 128 conditions (comparisons, 'in' and 'exists')",
    );
    const mixed = Array.from({ length: 129 }, (_, i) => (i % 2 ? "exists(id)" : "id in ['a']")).join("||");
    expect(() => parseFilter(mixed)).toThrow("more than 128 conditions");
  });

  it("accepts paths of 32 steps and rejects 33", () => {
    const deep = (n: number) => `exists(state${".a".repeat(n)})`;
    expect(() => parseFilter(deep(32))).not.toThrow();
    expect(() => parseFilter(deep(33))).toThrow(InvalidArgument);
    expect(() => parseFilter(deep(33))).toThrow("filter: at column 77: a path has at most 32 steps");
    expect(() => parseFilter(`exists(state${"[0]".repeat(33)})`)).toThrow("a path has at most 32 steps");
  });

  it("accepts in lists of 256 values and rejects 257", () => {
    const list = (n: number) => `state.a in [${Array.from({ length: n }, (_, i) => i).join(",")}]`;
    expect(matches(list(256), target({ state: { a: 255 } }))).toBe(true);
    expect(() => parseFilter(list(257))).toThrow(InvalidArgument);
    const text = list(257);
    const column = text.lastIndexOf(",256") + 2;
    expect(() => parseFilter(text)).toThrow(
      `filter: at column ${column}: an 'in' list holds at most 256 values`,
    );
  });

  it("rejects adversarial input with work linear in its length", () => {
    const inputs = [
      "(".repeat(4096),
      "!".repeat(4096),
      "not ".repeat(1024),
      `state.a == '${"\\".repeat(4000)}`,
      `state${".a".repeat(2000)}`,
      `state.a in [${"1,".repeat(2000)}`,
      "state.a == 1 and ".repeat(240),
      `"${"x".repeat(4094)}`,
      "9".repeat(4096),
    ];
    for (const input of inputs) {
      const work = lexerWork(() => expect(() => parseFilter(input)).toThrow(InvalidArgument));
      expectLinear(input, work);
    }
  });
});

describe("filter evaluation", () => {
  it("never throws on malformed targets", () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic["self"] = cyclic;
    const hostile = {
      get reported(): JsonObject {
        throw new Error("boom");
      },
      state: cyclic,
      desired: null,
      delta: "not an object",
      version: undefined,
    } as unknown as FilterTarget;
    const filters = [
      "reported.a == 1",
      "reported.a != 1",
      "exists(reported.a)",
      "reported.a in [1]",
      "state.self == state.self",
      "state.self.self.self.a == 1",
      "desired.a < 1",
      "delta.a == 1",
      "version > 1",
      "id == 'x'",
    ];
    for (const text of filters) {
      const filter = parseFilter(text);
      expect(() => filter.matches(hostile)).not.toThrow();
      expect(parseFilter(`not (${text})`).matches(hostile)).toBe(!filter.matches(hostile));
    }
    expect(matches("state.self.self.self.a == 1", hostile)).toBe(true);
    expect(matches("reported.a != 1", hostile)).toBe(true);
    expect(matches("exists(reported.a)", hostile)).toBe(false);
    expect(() => parseFilter("id == 'x'").matches(null as unknown as FilterTarget)).not.toThrow();
  });

  it("evaluates a tree given directly to evaluate", () => {
    const { ast } = parseFilter("reported.temperature > 30 and not exists(desired.setPoint)");
    expect(evaluate(ast, twin)).toBe(true);
    expect(evaluate(ast, target({ desired: { setPoint: 20 }, reported: { temperature: 40 } }))).toBe(false);
  });

  it("returns an immutable filter that keeps its text", () => {
    const filter = parseFilter("version == 7");
    expect(filter.text).toBe("version == 7");
    expect(Object.isFrozen(filter)).toBe(true);
    expect(Object.isFrozen(filter.ast)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests

const KEYS = ["a", "b", "c", "x y"] as const;

const jsonValue: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", maxDepth: 3 },
    fc.constantFrom<Json>(0, 1, -2, 1.5, "a", "b", "", "x", true, false, null),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie("value"), { maxKeys: 3 }),
  ),
})).value;

const jsonObject: fc.Arbitrary<JsonObject> = fc.dictionary(fc.constantFrom(...KEYS), jsonValue, {
  maxKeys: 4,
});

const filterTarget: fc.Arbitrary<FilterTarget> = fc.record({
  type: fc.constantFrom("a", "b", "thermostat"),
  id: fc.constantFrom("a", "b", "t-1"),
  version: fc.integer({ min: -2, max: 3 }),
  state: jsonObject,
  reported: jsonObject,
  desired: jsonObject,
  delta: jsonObject,
});

const segment = fc.oneof(
  fc.constantFrom(".a", ".b", ".c", '."x y"', ".A"),
  fc.integer({ min: 0, max: 2 }).map((i) => `[${i}]`),
);
const objectPath = fc
  .tuple(
    fc.constantFrom("state", "reported", "desired", "delta", "REPORTED"),
    fc.array(segment, { maxLength: 3 }),
  )
  .map(([root, steps]) => root + steps.join(""));
const path = fc.oneof({ weight: 4, arbitrary: objectPath }, fc.constantFrom("version", "id", "type"));
const literal = fc.oneof(
  fc.integer({ min: -3, max: 3 }).map(String),
  fc.constantFrom('"a"', "'b'", '"x"', "''", "true", "FALSE", "null", "1.5", "-2e0", "'\\u0061'"),
);
const op = fc.constantFrom("==", "!=", "<", "<=", ">", ">=");
const leaf = fc.oneof(
  fc.tuple(path, op, fc.oneof(path, literal)).map((parts) => parts.join(" ")),
  fc.tuple(literal, op, path).map((parts) => parts.join(" ")),
  path.map((p) => `exists(${p})`),
  fc
    .tuple(path, fc.array(literal, { minLength: 1, maxLength: 4 }))
    .map(([p, values]) => `${p} in [${values.join(", ")}]`),
);
const validFilter: fc.Arbitrary<string> = fc.letrec<{ node: string }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", maxDepth: 4 },
    leaf,
    fc
      .tuple(tie("node"), fc.constantFrom("and", "&&", "AND"), tie("node"))
      .map(([a, keyword, b]) => `${a} ${keyword} ${b}`),
    fc
      .tuple(tie("node"), fc.constantFrom("or", "||", "Or"), tie("node"))
      .map(([a, keyword, b]) => `${a} ${keyword} ${b}`),
    fc.tuple(fc.constantFrom("not ", "!", "NOT "), tie("node")).map(([keyword, a]) => `${keyword}(${a})`),
    tie("node").map((a) => `(${a})`),
  ),
})).node;

const TOKENS = [
  "(",
  ")",
  "[",
  "]",
  ",",
  ".",
  "==",
  "!=",
  "<",
  "<=",
  ">",
  ">=",
  "=",
  "!",
  "&&",
  "||",
  "&",
  "|",
  "and",
  "or",
  "not",
  "in",
  "exists",
  "true",
  "null",
  "state",
  "reported",
  "version",
  "id",
  "a",
  "1",
  "-1",
  "1e5",
  "0.5",
  "01",
  "-",
  '"',
  "'",
  '"x"',
  "'y'",
  "\\",
  "\\u",
  " ",
  "\n",
  "😀",
  "#",
];
const tokenSoup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((tokens) => tokens.join(""));

describe("filter properties", () => {
  it("rejects random text only with InvalidArgument, and evaluates whatever it accepts", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: "binary", maxLength: 80 }), tokenSoup, validFilter),
        filterTarget,
        (text, on) => {
          let filter: ReturnType<typeof parseFilter> | undefined;
          const work = lexerWork(() => {
            try {
              filter = parseFilter(text);
            } catch (error) {
              expect(error).toBeInstanceOf(InvalidArgument);
              const position = (error as InvalidArgument).details?.["position"];
              expect(typeof position).toBe("number");
              expect(position).toBeGreaterThanOrEqual(1);
              expect(position).toBeLessThanOrEqual([...text].length + 1);
            }
          });
          expectLinear(text, work);
          if (filter) expect(typeof filter.matches(on)).toBe("boolean");
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("accepts every generated valid filter", () => {
    fc.assert(
      fc.property(validFilter, (text) => {
        expect(() => parseFilter(text)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });

  it("evaluates not (X) to the opposite of X on every target", () => {
    fc.assert(
      fc.property(validFilter, filterTarget, (text, on) => {
        const result = parseFilter(text).matches(on);
        expect(parseFilter(`not (${text})`).matches(on)).toBe(!result);
        expect(parseFilter(`!(${text})`).matches(on)).toBe(!result);
      }),
      { numRuns: 1000 },
    );
  });

  it("evaluates p != v exactly as not (p == v)", () => {
    fc.assert(
      fc.property(path, fc.oneof(path, literal), filterTarget, (p, v, on) => {
        expect(parseFilter(`${p} != ${v}`).matches(on)).toBe(parseFilter(`not (${p} == ${v})`).matches(on));
      }),
      { numRuns: 1000 },
    );
  });

  it("never throws while evaluating against arbitrary values", () => {
    const anyTarget = fc
      .record({
        type: fc.anything(),
        id: fc.anything(),
        version: fc.anything(),
        state: fc.anything(),
        reported: fc.anything(),
        desired: fc.anything(),
        delta: fc.anything(),
      })
      .map((value) => value as unknown as FilterTarget);
    fc.assert(
      fc.property(validFilter, anyTarget, (text, on) => {
        const filter = parseFilter(text);
        expect(typeof filter.matches(on)).toBe("boolean");
      }),
      { numRuns: 500 },
    );
  });
});
