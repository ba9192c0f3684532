/**
 * Page tokens: opaque to clients, a small JSON cursor inside. Tokens come back from the wire, so
 * decoding validates them and answers a precise `InvalidArgument` instead of failing deep in a store.
 */
import { InvalidArgument } from "../core/errors.ts";

/** Encodes a cursor object as a URL-safe token. */
export function encodePageToken(cursor: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(cursor)).toString("base64url");
}

/** Decodes a token made by {@link encodePageToken} and checks that it has the given string/number fields. */
export function decodePageToken<K extends string>(
  token: string,
  fields: Readonly<Record<K, "string" | "number">>,
): Record<K, string | number> {
  let cursor: unknown;
  try {
    cursor = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new InvalidArgument("page token is malformed (pass back the token a previous page returned)");
  }
  if (typeof cursor !== "object" || cursor === null) throw new InvalidArgument("page token is malformed");
  const record = cursor as Record<string, unknown>;
  for (const [field, kind] of Object.entries(fields)) {
    if (typeof record[field] !== kind) throw new InvalidArgument("page token is malformed");
  }
  return record as Record<K, string | number>;
}
