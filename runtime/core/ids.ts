/**
 * Twin identity: `type/id`. Both parts use a strict charset that is safe as one NATS subject token
 * and one MQTT topic level, so a twin's subjects can be built by concatenation and a device's
 * permissions can be limited to its own subjects. Every entry point validates ids with these
 * functions before building any subject or query.
 */
import { InvalidArgument } from "./errors.ts";

/** Longest twin type name. */
export const MAX_TYPE_LENGTH = 63;
/** Longest twin id. */
export const MAX_ID_LENGTH = 128;

interface Charset {
  readonly first: RegExp;
  readonly rest: RegExp;
  /** The whole value in one test (first, then rest): a valid value is checked without a walk. */
  readonly whole: RegExp;
  readonly max: number;
  readonly allowed: string;
}

const TYPE_CHARSET: Charset = {
  first: /[A-Za-z]/,
  rest: /[A-Za-z0-9_-]/,
  whole: /^[A-Za-z][A-Za-z0-9_-]*$/,
  max: MAX_TYPE_LENGTH,
  allowed: "a letter first, then letters, digits, '_' and '-'",
};
const ID_CHARSET: Charset = {
  first: /[A-Za-z0-9_]/,
  rest: /[A-Za-z0-9_:-]/,
  whole: /^[A-Za-z0-9_][A-Za-z0-9_:-]*$/,
  max: MAX_ID_LENGTH,
  allowed: "letters, digits, '_', '-' and ':', not starting with '-' or ':'",
};

/** Identifies one twin. `key` is the canonical `type/id` string. */
export interface TwinRef {
  readonly type: string;
  readonly id: string;
}

/** The canonical `type/id` string of a twin. */
export function refKey(ref: TwinRef): string {
  return `${ref.type}/${ref.id}`;
}

function describeChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f)
    return `control character U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  if (/\s/.test(ch)) return `whitespace U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return `'${ch}'`;
}

function check(kind: "type" | "id", value: unknown, charset: Charset): string {
  if (typeof value !== "string") throw new InvalidArgument(`twin ${kind} must be a string`, { field: kind });
  if (value.length === 0) throw new InvalidArgument(`twin ${kind} is empty`, { field: kind });
  if (value.length > charset.max) {
    throw new InvalidArgument(
      `twin ${kind} is ${value.length} characters long; the limit is ${charset.max}`,
      {
        field: kind,
        limit: charset.max,
      },
    );
  }
  if (charset.whole.test(value)) return value;
  // Invalid: walk it to name the first character that is not allowed.
  let position = 0;
  for (const ch of value) {
    const ok = position === 0 ? charset.first.test(ch) : charset.rest.test(ch);
    if (!ok) {
      const where =
        position === 0 && charset.rest.test(ch) ? `cannot start a twin ${kind}` : "is not allowed";
      throw new InvalidArgument(
        `invalid twin ${kind} ${JSON.stringify(value)}: ${describeChar(ch)} at position ${position + 1} ${where} (allowed: ${charset.allowed})`,
        { field: kind, position: position + 1 },
      );
    }
    position++;
  }
  return value;
}

/** Returns `type` if it is a valid twin type name, else throws {@link InvalidArgument}. */
export function validateType(type: unknown): string {
  return check("type", type, TYPE_CHARSET);
}

/** Returns `id` if it is a valid twin id, else throws {@link InvalidArgument}. */
export function validateId(id: unknown): string {
  return check("id", id, ID_CHARSET);
}

/** Builds a validated {@link TwinRef}. */
export function twinRef(type: unknown, id: unknown): TwinRef {
  return { type: validateType(type), id: validateId(id) };
}

/** Parses and validates `type/id` (exactly one `/`). */
export function parseRef(text: unknown): TwinRef {
  if (typeof text !== "string") throw new InvalidArgument("twin reference must be a string 'type/id'");
  const slash = text.indexOf("/");
  if (slash < 0)
    throw new InvalidArgument(`invalid twin reference ${JSON.stringify(text)}: expected 'type/id'`);
  return twinRef(text.slice(0, slash), text.slice(slash + 1));
}
