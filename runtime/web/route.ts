/**
 * One REST route, declared once: method, path, the zod schemas of its parameters, query, headers,
 * body and success response (the OpenAPI document is generated from these), and its handler. A
 * handler runs its shared operation through {@link HttpCall.perform} — authenticate → authorize →
 * rate limit → admission, then the input is parsed — so a caller without a credential is refused
 * before anything of its request is looked at, exactly as over gRPC.
 */
import type { z } from "zod";
import type { CallCredentials } from "../api/callers.ts";
import { type Operation, perform, type ServiceContext, type TypeDetail } from "../api/operations.ts";
import { describeIssues } from "../core/config-issues.ts";
import { InvalidArgument } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";

/** What a route's handler may read besides the shared context. */
export interface WebContext extends ServiceContext {
  /** A type with its JSON Schemas (`GET /v1/types/{type}`), undefined when the node does not run it. */
  readonly describeType: (name: string) => TypeDetail | undefined;
}

/** The parts of an HTTP request a route validates. */
export interface RequestParts {
  readonly params: unknown;
  readonly query: unknown;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
}

/** What a handler answers (JSON). */
export interface RouteReply {
  readonly status?: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A documented response header. */
export interface HeaderSpec {
  readonly description: string;
  readonly schema: z.ZodType;
}

/** The schemas of a route's inputs. */
export interface RouteSchemas<P, Q, H, B> {
  readonly params?: z.ZodType<P>;
  readonly query?: z.ZodType<Q>;
  /** Request headers the route reads (names lower case). */
  readonly headers?: z.ZodType<H>;
  readonly body?: z.ZodType<B>;
}

/** The validated inputs of a request. */
export interface Parsed<P, Q, H, B> {
  readonly params: P;
  readonly query: Q;
  readonly headers: H;
  readonly body: B;
}

/** One request being handled. */
export class HttpCall<P, Q, H, B> {
  #parsed: Parsed<P, Q, H, B> | undefined;

  constructor(
    readonly ctx: WebContext,
    readonly credentials: CallCredentials,
    private readonly schemas: RouteSchemas<P, Q, H, B>,
    readonly parts: RequestParts,
  ) {}

  /** The raw path parameter `name` (for authorization, before validation). */
  param(name: string): string {
    const value = (this.parts.params as Record<string, unknown> | undefined)?.[name];
    return typeof value === "string" ? value : "";
  }

  /** The twin the path names, unvalidated (what authorization checks). */
  twin(): TwinRef {
    return { type: this.param("type"), id: this.param("id") };
  }

  /** Validates the request against the route's schemas (once); `InvalidArgument` names each bad field. */
  parsed(): Parsed<P, Q, H, B> {
    this.#parsed ??= {
      params: check(this.schemas.params, this.parts.params, "path"),
      query: check(this.schemas.query, this.parts.query ?? {}, "query"),
      headers: check(this.schemas.headers, this.parts.headers, "header"),
      body: check(this.schemas.body, this.parts.body, "body"),
    };
    return this.#parsed;
  }

  /** Runs a shared operation for this request (see `runtime/api/operations.ts`). */
  perform<In, Out>(
    operation: Operation<In, Out>,
    target: TwinRef | { readonly type: string } | undefined,
    decode: (parsed: Parsed<P, Q, H, B>) => In,
  ): Promise<Out> {
    return perform(this.ctx, operation, { credentials: this.credentials, target }, () =>
      decode(this.parsed()),
    );
  }
}

function check<T>(schema: z.ZodType<T> | undefined, value: unknown, where: string): T {
  if (schema === undefined) return undefined as T;
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new InvalidArgument(`invalid ${where}: ${describeIssues(result.error, "")}`, {
    in: where,
    issues: result.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })),
  });
}

/** A REST route. */
export interface Route<P = unknown, Q = unknown, H = unknown, B = unknown> extends RouteSchemas<P, Q, H, B> {
  readonly method: "GET" | "PUT" | "POST";
  /** OpenAPI path template: `/v1/twins/{type}/{id}`. */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly tag: string;
  /** False for the few routes anyone may read (the OpenAPI document). */
  readonly authenticated?: boolean;
  /** `device`: the caller is a device with its own credential (HTTP Basic), not a service with an API key. */
  readonly credential?: "device";
  /** The body's media types (default `application/json`). */
  readonly bodyTypes?: readonly string[];
  readonly response: {
    readonly status: number;
    readonly description: string;
    readonly schema: z.ZodType;
    readonly headers?: Readonly<Record<string, HeaderSpec>>;
  };
  /** Statuses of the problems it may answer, besides the ones every route may (400, 401, 429, 500, 503). */
  readonly problems: readonly number[];
  handle(call: HttpCall<P, Q, H, B>): Promise<RouteReply>;
}

/** Declares a route with its types inferred from its schemas. */
export function route<P, Q, H, B>(definition: Route<P, Q, H, B>): Route {
  return definition as unknown as Route;
}
