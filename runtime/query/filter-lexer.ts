/**
 * The tokenizer of the `QueryTwins` filter language (the language itself is documented in
 * `filter.ts`). It scans one token at a time on demand, so the parser always reports the leftmost
 * problem, and every error names the 1-based column (in Unicode code points) where it starts.
 *
 * Input is untrusted: scanning is a single forward pass over the text with no backtracking and no
 * regular expressions, so its cost is linear in the length of the text.
 */
import { InvalidArgument } from "../core/errors.ts";

/**
 * What a token is: a bare word (keyword, field root or field name), a number, a quoted string, a
 * punctuation/operator token, or the end of the input.
 */
export type TokenKind = "word" | "number" | "string" | "punct" | "eof";

/** One token of filter text. Offsets are UTF-16 indexes into the text; columns are computed on error. */
export interface Token {
  readonly kind: TokenKind;
  /** Index of the token's first character in the text. */
  readonly start: number;
  /** Index just past the token's last character. */
  readonly end: number;
  /** The token as written (with quotes and escapes for strings). Empty at end of input. */
  readonly raw: string;
  /**
   * The token's meaning: the decoded text of a string, the value of a number, the word itself, or
   * the operator (`==`, `(`, `&&`, ...).
   */
  readonly value: string | number;
}

/** 1-based column of `offset` in `text`, counted in Unicode code points (a surrogate pair is one column). */
export function columnOf(text: string, offset: number): number {
  let column = 1;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low surrogate is one character; count it at the high half.
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const prev = text.charCodeAt(i - 1);
      if (prev >= 0xd800 && prev <= 0xdbff) continue;
    }
    column++;
  }
  return column;
}

/**
 * Builds the error for a problem at `offset` in filter `text`:
 * `filter: at column 12: '=' is not an operator; did you mean '=='?`, with the column in
 * `details.position` and the text in `details.expression`.
 */
export function syntaxError(text: string, offset: number, message: string): InvalidArgument {
  const position = columnOf(text, offset);
  return new InvalidArgument(`filter: at column ${position}: ${message}`, { position, expression: text });
}

/** How a token appears in an error message: `'=='`, `'"abc"'` or `end of input`; long tokens are shortened. */
export function describeToken(token: Token): string {
  return token.kind === "eof" ? "end of input" : quoteForMessage(token.raw);
}

/** Quotes source text for an error message, shortening it past 40 characters. */
export function quoteForMessage(source: string): string {
  return `'${source.length > 40 ? `${source.slice(0, 37)}...` : source}'`;
}

const CH_TAB = 0x09;
const CH_LF = 0x0a;
const CH_CR = 0x0d;
const CH_SPACE = 0x20;
const CH_DQUOTE = 0x22;
const CH_SQUOTE = 0x27;
const CH_MINUS = 0x2d;
const CH_DOT = 0x2e;
const CH_0 = 0x30;
const CH_BACKSLASH = 0x5c;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isWordStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
}

function isWordPart(c: number): boolean {
  return isWordStart(c) || isDigit(c);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Names a character for an error message: `'#'`, or `U+0007` for control and whitespace characters. */
function describeChar(text: string, offset: number): string {
  const cp = text.codePointAt(offset) ?? 0;
  if (cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp === 0x2028 || cp === 0x2029 || cp === 0xfeff) {
    return `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
  }
  return `'${String.fromCodePoint(cp)}'`;
}

const QUOTE_HINT = ' (field names with other characters must be double-quoted: reported."serial-no")';

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "'": "'",
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/** A one-token-lookahead scanner over filter text. */
export class Lexer {
  private pos = 0;
  private lookahead: Token | undefined;

  constructor(private readonly text: string) {}

  /** The next token, without consuming it. */
  peek(): Token {
    if (this.lookahead === undefined) this.lookahead = this.scan();
    return this.lookahead;
  }

  /** Consumes and returns the next token. */
  next(): Token {
    const token = this.peek();
    this.lookahead = undefined;
    return token;
  }

  private fail(offset: number, message: string): never {
    throw syntaxError(this.text, offset, message);
  }

  private token(kind: TokenKind, start: number, end: number, value: string | number): Token {
    this.pos = end;
    return { kind, start, end, raw: this.text.slice(start, end), value };
  }

  private scan(): Token {
    const text = this.text;
    let pos = this.pos;
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c !== CH_SPACE && c !== CH_TAB && c !== CH_LF && c !== CH_CR) break;
      pos++;
    }
    this.pos = pos;
    if (pos >= text.length) return { kind: "eof", start: text.length, end: text.length, raw: "", value: "" };

    const c = text.charCodeAt(pos);
    if (isWordStart(c)) {
      let end = pos + 1;
      while (end < text.length && isWordPart(text.charCodeAt(end))) end++;
      return this.token("word", pos, end, text.slice(pos, end));
    }
    if (isDigit(c) || c === CH_MINUS) return this.scanNumber(pos);
    if (c === CH_DQUOTE || c === CH_SQUOTE) return this.scanString(pos);

    const next = pos + 1 < text.length ? text.charCodeAt(pos + 1) : -1;
    const ch = text[pos] as string;
    switch (ch) {
      case "(":
      case ")":
      case "[":
      case "]":
      case ",":
      case ".":
        return this.token("punct", pos, pos + 1, ch);
      case "=":
        if (next === 0x3d) return this.token("punct", pos, pos + 2, "==");
        return this.fail(pos, "'=' is not an operator; did you mean '=='?");
      case "!":
        if (next === 0x3d) return this.token("punct", pos, pos + 2, "!=");
        return this.token("punct", pos, pos + 1, "!");
      case "<":
      case ">":
        if (next === 0x3d) return this.token("punct", pos, pos + 2, `${ch}=`);
        return this.token("punct", pos, pos + 1, ch);
      case "&":
      case "|":
        if (next === ch.charCodeAt(0)) return this.token("punct", pos, pos + 2, ch + ch);
        return this.fail(pos, `'${ch}' is not an operator; did you mean '${ch}${ch}'?`);
    }
    const afterWord = pos > 0 && isWordPart(text.charCodeAt(pos - 1));
    const hint = afterWord ? QUOTE_HINT : "";
    return this.fail(pos, `unexpected character ${describeChar(text, pos)}${hint}`);
  }

  /** JSON number syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. */
  private scanNumber(start: number): Token {
    const text = this.text;
    let pos = start;
    if (text.charCodeAt(pos) === CH_MINUS) {
      pos++;
      if (!isDigit(text.charCodeAt(pos))) {
        const afterWord = start > 0 && isWordPart(text.charCodeAt(start - 1));
        const hint = afterWord ? QUOTE_HINT : " (a negative number is written with no space: -5)";
        return this.fail(start, `unexpected character '-'${hint}`);
      }
    }
    if (text.charCodeAt(pos) === CH_0) {
      pos++;
      if (isDigit(text.charCodeAt(pos))) return this.fail(start, "numbers cannot have leading zeros");
    } else {
      while (isDigit(text.charCodeAt(pos))) pos++;
    }
    if (text.charCodeAt(pos) === CH_DOT) {
      pos++;
      if (!isDigit(text.charCodeAt(pos))) return this.fail(pos - 1, "expected a digit after '.' in a number");
      while (isDigit(text.charCodeAt(pos))) pos++;
    }
    const e = text.charCodeAt(pos);
    if (e === 0x65 || e === 0x45) {
      pos++;
      const sign = text.charCodeAt(pos);
      if (sign === 0x2b || sign === CH_MINUS) pos++;
      if (!isDigit(text.charCodeAt(pos)))
        return this.fail(start, "expected digits in the exponent of a number");
      while (isDigit(text.charCodeAt(pos))) pos++;
    }
    if (pos < text.length && isWordPart(text.charCodeAt(pos))) {
      let end = pos;
      while (end < text.length && isWordPart(text.charCodeAt(end))) end++;
      return this.fail(start, `invalid number ${quoteForMessage(text.slice(start, end))}`);
    }
    const value = Number(text.slice(start, pos));
    if (!Number.isFinite(value)) {
      return this.fail(start, `number ${quoteForMessage(text.slice(start, pos))} is out of range`);
    }
    return this.token("number", start, pos, value);
  }

  /** A `"..."` or `'...'` string with JSON escapes plus `\'`. Raw control characters are refused. */
  private scanString(start: number): Token {
    const text = this.text;
    const quote = text.charCodeAt(start);
    let pos = start + 1;
    let chunk = pos;
    let out = "";
    for (;;) {
      if (pos >= text.length) return this.fail(start, "unterminated string");
      const c = text.charCodeAt(pos);
      if (c === quote) {
        out += text.slice(chunk, pos);
        return this.token("string", start, pos + 1, out);
      }
      if (c === CH_BACKSLASH) {
        out += text.slice(chunk, pos);
        if (pos + 1 >= text.length) return this.fail(start, "unterminated string");
        const e = text[pos + 1] as string;
        const simple = SIMPLE_ESCAPES[e];
        if (simple !== undefined) {
          out += simple;
          pos += 2;
        } else if (e === "u") {
          let code = 0;
          for (let i = 2; i < 6; i++) {
            const h = pos + i < text.length ? hexValue(text.charCodeAt(pos + i)) : -1;
            if (h < 0) return this.fail(pos, "'\\u' must be followed by four hex digits");
            code = code * 16 + h;
          }
          out += String.fromCharCode(code);
          pos += 6;
        } else {
          const shown = describeChar(text, pos + 1);
          const written = shown.startsWith("'") ? `'\\${shown.slice(1)}` : `'\\' followed by ${shown}`;
          return this.fail(
            pos,
            `unknown escape ${written} in a string (use \\" \\' \\\\ \\n \\t or \\uXXXX)`,
          );
        }
        chunk = pos;
        continue;
      }
      if (c < 0x20) {
        return this.fail(
          pos,
          `control character ${describeChar(text, pos)} in a string; write it as an escape such as \\n`,
        );
      }
      pos++;
    }
  }
}
