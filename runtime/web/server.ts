/**
 * The HTTP listener (`--http host:port`): the REST API under `/v1` on Fastify, with its OpenAPI
 * document at `/v1/openapi.json`, problem details for every failure (unknown routes, bodies that
 * are not JSON or too large included), the same security as the gRPC gateway (API keys as
 * `Authorization: Bearer`, TLS with the gateway's certificate, client certificates), and a hook
 * for what else the node serves on it (the operator console). Stopping it closes open
 * connections and WebSockets.
 */
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { CallCredentials, CallSecurity } from "../api/callers.ts";
import type { ServiceContext, TypeDetail, TypeInfo } from "../api/operations.ts";
import type { Admission } from "../core/admission.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { InvalidArgument, NotFound, Unavailable } from "../core/errors.ts";
import { formatHostPort, parseHostPort } from "../core/host-port.ts";
import type { JsonObject } from "../core/json.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import { type ExtraPaths, openApiDocument } from "./openapi.ts";
import { failedRequest, PROBLEM_JSON, problemOf } from "./problems.ts";
import { HttpCall, type Route, type WebContext } from "./route.ts";
import { TWIN_ROUTES } from "./twin-routes.ts";

/** TLS material of the listener, PEM (the gRPC gateway's). */
export interface WebTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA(s) that sign client certificates: when given, a client must present one (mTLS). */
  readonly clientCa?: Buffer;
}

/** Something served beside the API (the console): registered after the API routes. */
export type WebExtension = (app: FastifyInstance, server: { readonly url: string }) => Promise<void> | void;

export interface WebServerOptions {
  readonly api: TwinApi;
  readonly types: () => readonly TypeInfo[];
  readonly describeType?: (name: string) => TypeDetail | undefined;
  readonly cluster?: () => Promise<ClusterView>;
  /** `host:port`; port 0 picks a free one (see {@link WebServer.address}). */
  readonly listen: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Largest request body, bytes; larger: 413. */
  readonly maxBodyBytes: number;
  readonly admission?: Admission;
  readonly security?: CallSecurity;
  readonly tls?: WebTls;
  readonly rejected?: (code: string) => void;
  /** Events per store read for history (default 500). */
  readonly historyPageSize?: number;
  /** Changes a WebSocket watch may hold for a slow client before it is closed (default 1000). */
  readonly watchBufferLimit?: number;
  /** The package version (the OpenAPI document's `info.version`). */
  readonly version?: string;
  /** Served beside the API, e.g. the operator console at `/`. */
  readonly extensions?: readonly WebExtension[];
}

export interface WebServer {
  /** `host:port` with the actual port. */
  readonly address: string;
  /** `http://host:port` or `https://...`. */
  readonly url: string;
  /** The OpenAPI document served at `/v1/openapi.json`. */
  readonly openApi: JsonObject;
  stop(): Promise<void>;
}

/** Route modules add their routes and document their extra paths through this. */
export interface WebModule {
  readonly routes?: readonly Route[];
  readonly paths?: ExtraPaths;
  register?(app: FastifyInstance, ctx: WebContext): void | Promise<void>;
}

/** The credentials of an HTTP request, read only when the pipeline needs them. */
export function requestCredentials(request: FastifyRequest): CallCredentials {
  return {
    get authorization() {
      return request.raw.headersDistinct["authorization"] ?? [];
    },
    get peerCertificate() {
      const socket = request.raw.socket as Partial<TLSSocket>;
      return socket.encrypted && socket.authorized ? socket.getPeerCertificate?.() : undefined;
    },
    get peer() {
      return `${request.raw.socket.remoteAddress ?? ""}:${request.raw.socket.remotePort ?? 0}`;
    },
    hint: "send 'Authorization: Bearer <API key>'",
  };
}

/** The challenge of a 401 (RFC 9110 §11.6.1): what credential to send, services' or devices'. */
export const CHALLENGES = {
  service: 'Bearer realm="doppel"',
  device: 'Basic realm="doppel devices", charset="UTF-8"',
} as const;

/** Sends a problem reply for `error`; a 401 names the credential expected in `WWW-Authenticate`. */
export function sendProblem(
  reply: FastifyReply,
  ctx: Pick<ServiceContext, "logger" | "rejected">,
  route: string,
  error: unknown,
  status?: number,
  challenge: string = CHALLENGES.service,
): FastifyReply {
  const problem = failedRequest(ctx.logger, route, error, status);
  if (problem.body.code === "INVALID_ARGUMENT") ctx.rejected?.(problem.body.code);
  if (problem.status === 401) reply.header("www-authenticate", challenge);
  return reply.code(problem.status).headers(problem.headers).type(PROBLEM_JSON).send(problem.body);
}

/** `/v1/twins/{type}` → `/v1/twins/:type` (Fastify's syntax). */
function fastifyPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ":$1");
}

function registerRoute(app: FastifyInstance, ctx: WebContext, route: Route): void {
  const name = `${route.method} ${route.path}`;
  app.route({
    method: route.method,
    url: fastifyPath(route.path),
    handler: async (request, reply) => {
      try {
        const call = new HttpCall(ctx, requestCredentials(request), route, {
          params: request.params,
          query: request.query,
          headers: request.headers,
          body: request.body,
        });
        const answer = await route.handle(call);
        return reply
          .code(answer.status ?? route.response.status)
          .headers(answer.headers ?? {})
          .type("application/json")
          .send(answer.body);
      } catch (error) {
        const challenge = route.credential === "device" ? CHALLENGES.device : CHALLENGES.service;
        return sendProblem(reply, ctx, name, error, undefined, challenge);
      }
    },
  });
}

/**
 * A request the HTTP parser refused before any route saw it (headers or request line too large,
 * malformed request, timeout) answered with problem details on the raw socket, as Fastify's own
 * handler does with its JSON; then the socket is closed.
 */
function clientError(ctx: Pick<ServiceContext, "logger">) {
  return (error: Error & { code?: string }, socket: Socket): void => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    const status =
      error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const detail =
      status === 431
        ? "the request line or headers are larger than the node accepts"
        : status === 408
          ? "the request did not arrive in time"
          : "malformed HTTP request";
    const problem = failedRequest(ctx.logger, "client error", new InvalidArgument(detail), status);
    const body = JSON.stringify(problem.body);
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nConnection: close\r\n` +
          `Content-Type: ${PROBLEM_JSON}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

/** Whether `path` is an instance of the OpenAPI path template (`/v1/twins/{type}`). */
function matchesTemplate(template: string, path: string): boolean {
  const want = template.split("/");
  const got = path.split("/");
  return (
    want.length === got.length &&
    want.every((segment, i) => (/^\{\w+\}$/.test(segment) ? got[i] !== "" : segment === got[i]))
  );
}

/** The methods the node serves on `path` (none: the path is unknown). */
function methodsOn(operations: readonly { path: string; method: string }[], path: string): string[] {
  const methods = operations.filter((op) => matchesTemplate(op.path, path)).map((op) => op.method);
  return [...new Set(methods)].sort();
}

/** Fastify's own 4xx errors (body not JSON, too large, media type) as Doppel errors. */
function frameworkError(error: { statusCode?: number; code?: string; message: string }): {
  error: unknown;
  status?: number;
} {
  const status = error.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    if (status === 413)
      return { error: new InvalidArgument(`request body too large: ${error.message}`), status };
    if (status === 415) return { error: new InvalidArgument(error.message), status };
    return { error: new InvalidArgument(error.message, { fastify: error.code ?? "" }) };
  }
  return { error };
}

/**
 * Starts the listener. Fails with `InvalidArgument` for bad options and `Unavailable` when the
 * address cannot be bound.
 */
export async function startWebServer(
  options: WebServerOptions,
  modules: readonly WebModule[] = [],
): Promise<WebServer> {
  const { host, port } = parseHostPort(options.listen, "http listen address");
  const ctx: WebContext = {
    api: options.api,
    types: options.types,
    describeType: options.describeType ?? (() => undefined),
    cluster: options.cluster ?? (async () => ({ name: "", shardCount: 0, self: "", nodes: [], shards: [] })),
    logger: options.logger,
    clock: options.clock ?? SystemClock,
    historyPageSize: options.historyPageSize ?? 500,
    watchBufferLimit: options.watchBufferLimit ?? 1000,
    ...(options.rejected ? { rejected: options.rejected } : {}),
    ...(options.admission ? { admission: options.admission } : {}),
    ...(options.security ? { security: options.security } : {}),
  };
  const tls = options.tls;
  const app = Fastify({
    logger: false,
    bodyLimit: options.maxBodyBytes,
    forceCloseConnections: true,
    clientErrorHandler: clientError(ctx),
    return503OnClosing: true,
    ...(tls
      ? {
          https: {
            cert: tls.cert,
            key: tls.key,
            ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
          },
        }
      : {}),
  }) as unknown as FastifyInstance;

  // A desired patch may come as a JSON merge patch (RFC 7396): the same JSON.
  app.addContentTypeParser(
    "application/merge-patch+json",
    { parseAs: "string" },
    app.getDefaultJsonParser("error", "error"),
  );
  const routes = [...TWIN_ROUTES, ...modules.flatMap((module) => module.routes ?? [])];
  const operations = [
    ...routes,
    ...modules.flatMap((module) =>
      Object.entries(module.paths ?? {}).flatMap(([path, item]) =>
        Object.keys(item).map((method) => ({ path, method: method.toUpperCase() })),
      ),
    ),
    { path: "/v1/openapi.json", method: "GET" },
  ];
  /** No route for this request: 405 with `Allow` when the path has routes for other methods, else 404. */
  const unmatched = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split("?")[0] ?? "";
    const methods = methodsOn(operations, path);
    if (methods.length === 0 || methods.includes(request.method))
      return sendProblem(
        reply,
        ctx,
        "not found",
        new NotFound(`no route ${request.method} ${path} (see /v1/openapi.json)`),
      );
    reply.header("allow", methods.join(", "));
    return sendProblem(
      reply,
      ctx,
      "method not allowed",
      new InvalidArgument(`${request.method} is not allowed on ${path}; allowed: ${methods.join(", ")}`, {
        allow: methods,
      }),
      405,
    );
  };
  app.setErrorHandler((error, request, reply) => {
    // A method Fastify parses a body for (QUERY...) but no route declares: not a body problem.
    if (request.routeOptions.url === undefined) return unmatched(request, reply);
    const mapped = frameworkError(error as { statusCode?: number; code?: string; message: string });
    return sendProblem(reply, ctx, `${request.method} ${request.url}`, mapped.error, mapped.status);
  });
  app.setNotFoundHandler(unmatched);

  const document = openApiDocument(
    routes,
    options.version ?? "0.0.0",
    Object.assign({}, ...modules.map((module) => module.paths ?? {})),
  );
  app.get("/v1/openapi.json", async (_request, reply) => reply.type("application/json").send(document));
  for (const route of routes) registerRoute(app, ctx, route);
  for (const module of modules) await module.register?.(app, ctx);
  const scheme = tls ? "https" : "http";
  let url = "";
  for (const extension of options.extensions ?? []) {
    await extension(app, {
      get url() {
        return url;
      },
    });
  }

  let bound: number;
  try {
    await app.listen({ host, port });
    const address = app.server.address();
    bound = typeof address === "object" && address !== null ? address.port : port;
  } catch (error) {
    await app.close().catch(() => undefined);
    throw new Unavailable(`HTTP listener cannot listen on ${options.listen}: ${(error as Error).message}`);
  }
  const address = formatHostPort(host, bound);
  url = `${scheme}://${address}`;
  options.logger.info({ address, tls: tls ? (tls.clientCa ? "mtls" : "tls") : "off" }, "HTTP listening");

  let stopping: Promise<void> | undefined;
  return {
    address,
    url,
    openApi: document,
    stop: () => {
      stopping ??= app
        .close()
        .catch((error: unknown) => options.logger.warn({ err: error }, "HTTP listener did not close cleanly"))
        .then(() => options.logger.info({ address }, "HTTP listener stopped"));
      return stopping;
    },
  };
}

/** The problem for an error, for modules that answer outside a route (WebSocket upgrades). */
export { problemOf };
