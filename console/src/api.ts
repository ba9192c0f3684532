/**
 * The console's client of the node's REST API (`/v1/...`, same origin): JSON bodies, the API key
 * as a bearer token, errors as RFC 9457 problem details carrying Doppel's stable codes.
 */
import type { Json, JsonObject } from "./json.ts";
import { storedKey } from "./session.ts";

export type { Json, JsonObject } from "./json.ts";

/** A problem details answer (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problem: JsonObject = {},
  ) {
    super(message);
  }
  /** The twin moved on since the version the caller sent (If-Match / expected version). */
  get isVersionConflict(): boolean {
    return this.code === "VERSION_CONFLICT" || this.status === 412;
  }
  get isUnauthenticated(): boolean {
    return this.status === 401;
  }
}

export interface RequestOptions {
  readonly method?: string;
  readonly body?: Json;
  readonly headers?: Record<string, string>;
  /** Use this key instead of the stored one (the login form's probe). */
  readonly key?: string | null;
}

/** Calls the API; resolves with the parsed JSON body, rejects with an {@link ApiError}. */
export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const key = options.key === undefined ? storedKey() : options.key;
  const headers: Record<string, string> = { accept: "application/json", ...options.headers };
  if (key) headers["authorization"] = `Bearer ${key}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `The node did not answer: ${(error as Error).message}`);
  }
  const text = await response.text();
  let body: Json = null;
  try {
    body = text ? (JSON.parse(text) as Json) : null;
  } catch {
    body = { detail: text };
  }
  if (!response.ok) {
    const problem = body !== null && typeof body === "object" && !Array.isArray(body) ? body : {};
    const detail = problem["detail"] ?? problem["title"] ?? response.statusText;
    const code = typeof problem["code"] === "string" ? problem["code"] : `HTTP_${response.status}`;
    throw new ApiError(response.status, code, String(detail), problem);
  }
  return body as T;
}

/** `type/id` path segments, encoded. */
export function twinPath(type: string, id: string): string {
  return `/v1/twins/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
}

/** Query string of the defined, non-empty parameters (with a leading `?`, or ""). */
export function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== "") search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : "";
}
