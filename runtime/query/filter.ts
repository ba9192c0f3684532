/**
 * The filter language of `QueryTwins`: which twins of a type a query returns, judged on each twin's
 * latest state.
 *
 * ```sh
 * doppel query thermostat --where 'reported.temperature > 30 and not exists(desired.setPoint)'
 * ```
 *
 * ## Reference
 *
 * A filter is a condition over one twin. Conditions combine with `and`, `or` and `not` (or `&&`,
 * `||` and `!`); `and` binds tighter than `or`, so `a or b and c` means `a or (b and c)`.
 * Parentheses group. Keywords and field roots are case-insensitive (`AND`, `Not`, `Reported`);
 * field names are not. Spaces, tabs and line breaks between tokens are ignored.
 *
 * | Condition                | True when                                                            |
 * | ------------------------ | -------------------------------------------------------------------- |
 * | `a == b`                 | both sides have a value and the values are equal JSON                |
 * | `a != b`                 | exactly `not (a == b)`: also true when either side is missing        |
 * | `a < b`, `<=`, `>`, `>=` | both sides are numbers, or both are strings (UTF-16 code unit order) |
 * | `path in [v1, v2, ...]`  | the path has a value equal to one of the listed literals             |
 * | `exists(path)`           | the path has a value (`null` counts as a value)                      |
 *
 * At least one side of a comparison must be a field path (`30 < reported.temperature` is fine,
 * `1 == 1` is an error). Equality is structural: `reported.tags == reported.oldTags` compares
 * whole arrays and objects, ignoring key order. Ordering comparisons between other kinds of values
 * (a number and a string, an object, a missing field) are simply false; evaluation never fails.
 *
 * **Field paths** start at a root and step into objects and arrays:
 *
 * - `state`: the twin's own state; `reported`, `desired`, `delta`: its shadow documents.
 * - `version` (number), `id` and `type` (strings): the twin's version and identity; they have no fields.
 * - `.name` steps into an object key (`[A-Za-z_][A-Za-z0-9_]*`); other keys are double-quoted:
 *   `reported."serial-no"`, `state."0"`.
 * - `[2]` steps into an array element (a non-negative integer).
 *
 * A path that names an absent key, an index past the end, or steps into something that is not an
 * object (or array) is *missing*. A missing path equals nothing, so `reported.x == 5` is false,
 * `reported.x != 5` is true, `reported.x < 5` and `reported.x in [5]` are false, and
 * `not exists(reported.x)` is true.
 *
 * **Literals** are JSON values without objects and arrays: numbers in JSON syntax (`-3`, `2.5e3`),
 * strings in double or single quotes (`"a"`, `'b'`) with the JSON escapes plus `\'`
 * (`\" \' \\ \/ \b \f \n \r \t \uXXXX`; raw control characters such as a line break must be
 * escaped), `true`, `false` and `null` (case-insensitive).
 *
 * Grammar:
 *
 * ```
 * filter     := or EOF
 * or         := and (("or" | "||") and)*
 * and        := unary (("and" | "&&") unary)*
 * unary      := ("not" | "!") unary | primary
 * primary    := "(" or ")" | "exists" "(" path ")" | comparison
 * comparison := operand op operand | path "in" "[" literal ("," literal)* "]"
 * op         := "==" | "!=" | "<" | "<=" | ">" | ">="
 * operand    := path | literal
 * path       := root ("." segment | "[" integer "]")*
 * root       := "state" | "reported" | "desired" | "delta" | "version" | "id" | "type"
 * segment    := identifier | double-quoted string
 * literal    := number | string | "true" | "false" | "null"
 * ```
 *
 * **Limits** ({@link FILTER_LIMITS}): at most 4096 characters, 32 levels of nesting (parentheses
 * and `not`), 128 conditions (comparisons, `in` and `exists`), 32 steps in one path and 256 values in
 * one `in` list. Each filter therefore costs bounded work per twin.
 *
 * **Errors** are {@link InvalidArgument}s that name the 1-based column (in Unicode characters) of the
 * problem, which is also in `details.position`:
 * `filter: at column 24: expected a value after '>' but found end of input`.
 *
 * ## Implementation
 *
 * Filters arrive from CLIs and over gRPC, so the text is untrusted. It is tokenized
 * (`filter-lexer.ts`) and parsed by a small hand-written recursive-descent parser into a plain AST
 * that {@link evaluate} interprets; the text is never evaluated as code. A parser generator or
 * expression library would be a dependency for a grammar this small, and would not give the
 * column-precise, user-facing messages wanted here. Recursion depth is bounded by the nesting limit,
 * and every loop consumes input, so parsing is linear in the length of the text.
 */
import { InvalidArgument } from "../core/errors.ts";
import { deepFreeze, type Json, type JsonObject, type JsonPrimitive, jsonEqual } from "../core/json.ts";
import { columnOf, describeToken, Lexer, quoteForMessage, syntaxError, type Token } from "./filter-lexer.ts";

/** The view of one twin a filter is evaluated against. */
export interface FilterTarget {
  readonly type: string;
  readonly id: string;
  readonly version: number;
  readonly state: JsonObject;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  readonly delta: JsonObject;
}

/** Bounds on one filter; exceeding any of them is an {@link InvalidArgument}. */
export const FILTER_LIMITS = Object.freeze({
  /** Longest filter text, in characters (Unicode code points). */
  maxLength: 4096,
  /** Deepest nesting of parentheses and `not`. */
  maxDepth: 32,
  /** Most conditions (comparisons, `in` and `exists`) in one filter. */
  maxConditions: 128,
  /** Most steps (`.name` or `[index]`) after a path's root. */
  maxPathSegments: 32,
  /** Most values in one `in [...]` list. */
  maxInValues: 256,
});

/** Where a field path starts. */
export type FieldRoot = "state" | "reported" | "desired" | "delta" | "version" | "id" | "type";

/** A field path: a root, then object keys (strings) and array indexes (numbers). */
export interface FieldPath {
  readonly kind: "path";
  readonly root: FieldRoot;
  readonly segments: readonly (string | number)[];
}

/** A literal value written in a filter. */
export interface Literal {
  readonly kind: "literal";
  readonly value: JsonPrimitive;
}

/** One side of a comparison. */
export type Operand = FieldPath | Literal;

/** The comparison operators. */
export type CompareOp = "==" | "!=" | "<" | "<=" | ">" | ">=";

/**
 * A parsed filter. `and`/`or` hold two or more operands (a chain `a and b and c` is one node);
 * parentheses leave no node of their own.
 */
export type FilterNode =
  | { readonly kind: "and"; readonly operands: readonly FilterNode[] }
  | { readonly kind: "or"; readonly operands: readonly FilterNode[] }
  | { readonly kind: "not"; readonly operand: FilterNode }
  | { readonly kind: "exists"; readonly path: FieldPath }
  | { readonly kind: "compare"; readonly op: CompareOp; readonly left: Operand; readonly right: Operand }
  | { readonly kind: "in"; readonly path: FieldPath; readonly values: readonly JsonPrimitive[] };

/** A parsed, immutable filter, safe to share and to evaluate concurrently. */
export interface Filter {
  /** The text it was parsed from. */
  readonly text: string;
  /** Its syntax tree (deeply frozen). */
  readonly ast: FilterNode;
  /** True when `target` satisfies the filter. Never throws. */
  matches(target: FilterTarget): boolean;
}

/**
 * Parses filter text from an untrusted source.
 *
 * @throws InvalidArgument naming the column of the first problem, or a broken limit.
 */
export function parseFilter(text: string): Filter {
  if (typeof text !== "string") throw new InvalidArgument("filter: must be a string");
  if (longerThan(text, FILTER_LIMITS.maxLength)) {
    throw new InvalidArgument(`filter: longer than the limit of ${FILTER_LIMITS.maxLength} characters`, {
      position: FILTER_LIMITS.maxLength + 1,
      limit: FILTER_LIMITS.maxLength,
    });
  }
  const ast = deepFreeze(new Parser(text).parse());
  return Object.freeze({ text, ast, matches: (target: FilterTarget) => evaluate(ast, target) });
}

/** True when `text` has more than `max` code points; reads at most `2 * max` code units. */
function longerThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  if (text.length > 2 * max) return true;
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    if (++count > max) return true;
  }
  return false;
}

const ROOTS: ReadonlySet<string> = new Set<FieldRoot>([
  "state",
  "reported",
  "desired",
  "delta",
  "version",
  "id",
  "type",
]);
const SCALAR_ROOTS: ReadonlySet<string> = new Set<FieldRoot>(["version", "id", "type"]);
const COMPARE_OPS: ReadonlySet<string> = new Set<CompareOp>(["==", "!=", "<", "<=", ">", ">="]);
const ROOT_HINT = "(use state., reported., desired., delta., version, id or type)";
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

class Parser {
  private readonly lexer: Lexer;
  private depth = 0;
  private conditions = 0;
  /** The last thing consumed, as shown in "expected ... after '...'" messages. */
  private previous = "";

  constructor(private readonly text: string) {
    this.lexer = new Lexer(text);
  }

  parse(): FilterNode {
    const first = this.lexer.peek();
    if (first.kind === "eof") {
      throw new InvalidArgument("filter: empty expression", { position: 1, expression: this.text });
    }
    const node = this.parseOr();
    const rest = this.lexer.peek();
    if (rest.kind !== "eof") {
      if (isPunct(rest, ")")) this.fail(rest, "unexpected ')' with no matching '('");
      this.fail(rest, this.expected("'and', 'or' or end of input", rest));
    }
    return node;
  }

  private fail(at: Token | number, message: string): never {
    throw syntaxError(this.text, typeof at === "number" ? at : at.start, message);
  }

  private expected(what: string, found: Token): string {
    const after = this.previous === "" ? "" : ` after ${quoteForMessage(this.previous)}`;
    return `expected ${what}${after} but found ${describeToken(found)}`;
  }

  private take(): Token {
    const token = this.lexer.next();
    this.previous = token.raw;
    return token;
  }

  private expectPunct(punct: string, what = `'${punct}'`): Token {
    const token = this.lexer.peek();
    if (!isPunct(token, punct)) this.fail(token, this.expected(what, token));
    return this.take();
  }

  private enter(at: Token): void {
    this.depth++;
    if (this.depth > FILTER_LIMITS.maxDepth) {
      this.fail(at, `nested deeper than ${FILTER_LIMITS.maxDepth} levels of parentheses and 'not'`);
    }
  }

  private countCondition(at: Token): void {
    this.conditions++;
    if (this.conditions > FILTER_LIMITS.maxConditions) {
      this.fail(at, `more than ${FILTER_LIMITS.maxConditions} conditions (comparisons, 'in' and 'exists')`);
    }
  }

  private parseOr(): FilterNode {
    const first = this.parseAnd();
    let token = this.lexer.peek();
    if (!isWord(token, "or") && !isPunct(token, "||")) return first;
    const operands = [first];
    while (isWord(token, "or") || isPunct(token, "||")) {
      this.take();
      operands.push(this.parseAnd());
      token = this.lexer.peek();
    }
    return { kind: "or", operands };
  }

  private parseAnd(): FilterNode {
    const first = this.parseUnary();
    let token = this.lexer.peek();
    if (!isWord(token, "and") && !isPunct(token, "&&")) return first;
    const operands = [first];
    while (isWord(token, "and") || isPunct(token, "&&")) {
      this.take();
      operands.push(this.parseUnary());
      token = this.lexer.peek();
    }
    return { kind: "and", operands };
  }

  private parseUnary(): FilterNode {
    const token = this.lexer.peek();
    if (!isWord(token, "not") && !isPunct(token, "!")) return this.parsePrimary();
    this.take();
    this.enter(token);
    const operand = this.parseUnary();
    this.depth--;
    return { kind: "not", operand };
  }

  private parsePrimary(): FilterNode {
    const token = this.lexer.peek();
    if (isPunct(token, "(")) {
      this.take();
      this.enter(token);
      const inner = this.parseOr();
      const close = this.lexer.peek();
      if (!isPunct(close, ")")) {
        const column = columnOf(this.text, token.start);
        this.fail(
          close,
          `expected ')' to close the '(' at column ${column} but found ${describeToken(close)}`,
        );
      }
      this.take();
      this.depth--;
      return inner;
    }
    if (isWord(token, "exists")) {
      this.take();
      this.countCondition(token);
      this.expectPunct("(");
      const pathToken = this.lexer.peek();
      const path = this.parseOperand("a field path");
      if (path.kind !== "path") this.fail(pathToken, "exists() takes a field path, not a literal value");
      this.expectPunct(")");
      return { kind: "exists", path };
    }
    return this.parseComparison();
  }

  private parseComparison(): FilterNode {
    const start = this.lexer.peek();
    const left = this.parseOperand("a condition");
    const op = this.lexer.peek();
    if (op.kind === "punct" && COMPARE_OPS.has(op.value as string)) {
      this.take();
      const right = this.parseOperand("a value");
      if (left.kind === "literal" && right.kind === "literal") {
        this.fail(start, "compares two literal values; at least one side must be a field path " + ROOT_HINT);
      }
      this.countCondition(start);
      return { kind: "compare", op: op.value as CompareOp, left, right };
    }
    if (isWord(op, "in")) {
      if (left.kind !== "path") this.fail(start, "the left side of 'in' must be a field path");
      this.take();
      this.countCondition(start);
      return { kind: "in", path: left, values: this.parseList() };
    }
    return this.fail(op, this.expected("an operator (==, !=, <, <=, >, >= or in)", op));
  }

  private parseList(): JsonPrimitive[] {
    this.expectPunct("[");
    const values: JsonPrimitive[] = [];
    for (;;) {
      const token = this.lexer.peek();
      const value = literalOf(token);
      if (value === undefined) {
        this.fail(token, this.expected("a literal value (number, string, true, false or null)", token));
      }
      if (values.length >= FILTER_LIMITS.maxInValues) {
        this.fail(token, `an 'in' list holds at most ${FILTER_LIMITS.maxInValues} values`);
      }
      this.take();
      values.push(value.value);
      const next = this.lexer.peek();
      if (isPunct(next, "]")) {
        this.take();
        return values;
      }
      if (!isPunct(next, ",")) this.fail(next, this.expected("',' or ']'", next));
      this.take();
    }
  }

  /** A field path or a literal; `what` names the expectation in the error when it is neither. */
  private parseOperand(what: string): Operand {
    const token = this.lexer.peek();
    const literal = literalOf(token);
    if (literal !== undefined) {
      this.take();
      return { kind: "literal", value: literal.value };
    }
    if (token.kind === "word") {
      const word = (token.value as string).toLowerCase();
      if (ROOTS.has(word)) return this.parsePath(token, word as FieldRoot);
      if (!KEYWORDS.has(word))
        this.fail(token, `unknown field root ${quoteForMessage(token.raw)} ${ROOT_HINT}`);
    }
    return this.fail(token, this.expected(what, token));
  }

  private parsePath(rootToken: Token, root: FieldRoot): FieldPath {
    this.take();
    const segments: (string | number)[] = [];
    let end = rootToken.end;
    for (;;) {
      const step = this.lexer.peek();
      const dot = isPunct(step, ".");
      if (!dot && !isPunct(step, "[")) break;
      if (SCALAR_ROOTS.has(root)) this.fail(step, `'${root}' has no fields`);
      if (segments.length >= FILTER_LIMITS.maxPathSegments) {
        this.fail(step, `a path has at most ${FILTER_LIMITS.maxPathSegments} steps`);
      }
      this.take();
      const name = this.lexer.peek();
      if (dot) {
        if (name.kind === "word" || (name.kind === "string" && name.raw.startsWith('"'))) {
          segments.push(name.value as string);
        } else {
          const hint =
            name.kind === "number"
              ? ' (use [0] for an array element or ."0" for such a key)'
              : name.kind === "string"
                ? " (quote field names with double quotes)"
                : "";
          this.fail(name, this.expected("a field name", name) + hint);
        }
        end = this.take().end;
      } else {
        if (name.kind !== "number" || !ARRAY_INDEX.test(name.raw) || !Number.isSafeInteger(name.value)) {
          this.fail(name, this.expected("an array index (a non-negative integer)", name));
        }
        segments.push(name.value as number);
        this.take();
        end = this.expectPunct("]").end;
      }
    }
    this.previous = this.text.slice(rootToken.start, end);
    return { kind: "path", root, segments };
  }
}

const KEYWORDS: ReadonlySet<string> = new Set(["and", "or", "not", "in", "exists", "true", "false", "null"]);

function isPunct(token: Token, punct: string): boolean {
  return token.kind === "punct" && token.value === punct;
}

function isWord(token: Token, lowerCaseWord: string): boolean {
  return (
    token.kind === "word" &&
    token.raw.length === lowerCaseWord.length &&
    token.raw.toLowerCase() === lowerCaseWord
  );
}

/** The literal a token denotes, boxed so that `null` is distinguishable from "not a literal". */
function literalOf(token: Token): { value: JsonPrimitive } | undefined {
  switch (token.kind) {
    case "number":
    case "string":
      return { value: token.value };
    case "word":
      if (isWord(token, "true")) return { value: true };
      if (isWord(token, "false")) return { value: false };
      if (isWord(token, "null")) return { value: null };
      return undefined;
    default:
      return undefined;
  }
}

/**
 * Evaluates a filter tree against one twin. Never throws, whatever `target` holds: a condition that
 * cannot be decided on a malformed target (a getter that throws, a cyclic value) is false, and
 * `not` of it is true, so `not X` is always the opposite of `X`.
 */
export function evaluate(node: FilterNode, target: FilterTarget): boolean {
  switch (node.kind) {
    case "and": {
      const operands = node.operands;
      for (let i = 0; i < operands.length; i++) {
        if (!evaluate(operands[i] as FilterNode, target)) return false;
      }
      return true;
    }
    case "or": {
      const operands = node.operands;
      for (let i = 0; i < operands.length; i++) {
        if (evaluate(operands[i] as FilterNode, target)) return true;
      }
      return false;
    }
    case "not":
      return !evaluate(node.operand, target);
    case "compare":
      // `!=` is defined as `not ==`, including when a side is missing or cannot be read.
      return node.op === "!=" ? !condition(node, "==", target) : condition(node, node.op, target);
    default:
      return condition(node, undefined, target);
  }
}

/** A leaf condition, made total: any exception from a malformed target means false. */
function condition(node: FilterNode, op: CompareOp | undefined, target: FilterTarget): boolean {
  try {
    switch (node.kind) {
      case "exists":
        return resolve(node.path, target) !== undefined;
      case "in": {
        const value = resolve(node.path, target);
        if (value === undefined) return false;
        const values = node.values;
        for (let i = 0; i < values.length; i++) {
          if (jsonEqual(value as Json, values[i])) return true;
        }
        return false;
      }
      case "compare":
        return compare(op ?? node.op, operandValue(node.left, target), operandValue(node.right, target));
      default:
        return false;
    }
  } catch {
    return false;
  }
}

function operandValue(operand: Operand, target: FilterTarget): unknown {
  return operand.kind === "literal" ? operand.value : resolve(operand, target);
}

function compare(op: CompareOp, a: unknown, b: unknown): boolean {
  switch (op) {
    case "==":
      return a !== undefined && b !== undefined && jsonEqual(a as Json, b as Json);
    case "!=":
      return !(a !== undefined && b !== undefined && jsonEqual(a as Json, b as Json));
    default:
      if (typeof a === "number" && typeof b === "number") return ordered(op, a, b);
      if (typeof a === "string" && typeof b === "string") return ordered(op, a, b);
      return false;
  }
}

function ordered<T extends number | string>(op: CompareOp, a: T, b: T): boolean {
  switch (op) {
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case ">":
      return a > b;
    case ">=":
      return a >= b;
    default:
      return false;
  }
}

/** Walks a path through the target; `undefined` means missing. Reads only own keys of objects. */
function resolve(path: FieldPath, target: FilterTarget): unknown {
  let current: unknown = target[path.root];
  const segments = path.segments;
  for (let i = 0; i < segments.length; i++) {
    if (typeof current !== "object" || current === null) return undefined;
    const segment = segments[i];
    if (typeof segment === "number") {
      if (!Array.isArray(current) || !(segment >= 0 && segment < current.length)) return undefined;
      current = current[segment];
    } else {
      if (Array.isArray(current) || !Object.hasOwn(current, segment as string)) return undefined;
      current = (current as Record<string, unknown>)[segment as string];
    }
  }
  return current;
}
