/**
 * `GET /v1/twins/{type}/{id}/watch` as a WebSocket: the twin's current state, then one text
 * message per persisted change — `{ "twin": Twin, "events": [HistoryEvent...] }`, versions
 * strictly increasing — the semantics of gRPC `WatchTwin` (the shared {@link TwinWatch}).
 *
 * The caller is admitted before the upgrade, so a refusal is an ordinary HTTP problem (401, 403,
 * 429): the key as `Authorization: Bearer <key>`, or — browsers cannot set headers on a WebSocket —
 * as the `access_token` query parameter (RFC 6750 §2.3). An open watch holds a slot of the `watch`
 * admission class until it closes.
 *
 * A slow client is closed, never buffered without bound: messages the socket has not written
 * stay under `maxBufferedBytes` (then the watch waits for the socket), and changes waiting beyond
 * `watchBufferLimit` close the socket with 1013 (Try Again Later, reason `RESOURCE_EXHAUSTED: ...`):
 * watch again to resume from the current state. The server stopping closes with 1001.
 */
import websocket from "@fastify/websocket";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { WebSocket } from "ws";
import { admitCaller, admitWork, type CallCredentials } from "../api/callers.ts";
import { TwinWatch, type WatchSink } from "../api/twin-watch.ts";
import type { Permit } from "../core/admission.ts";
import { DoppelError, ErrorCode, InvalidArgument } from "../core/errors.ts";
import { twinRef } from "../core/ids.ts";
import { jsonSchemaOf } from "./openapi.ts";
import { PROBLEM_JSON } from "./problems.ts";
import { eventJson, twinId, twinJson, typeName } from "./resources.ts";
import type { WebContext } from "./route.ts";
import { requestCredentials, sendProblem, type WebModule } from "./server.ts";

/** Close codes (RFC 6455 §7.4.1). */
export const CLOSE = { goingAway: 1001, policy: 1008, internal: 1011, tryAgainLater: 1013 } as const;
/** Largest close reason, bytes (a control frame's payload is at most 125, 2 of them the code). */
const MAX_REASON_BYTES = 123;
/** Bytes a socket may hold unwritten before the watch waits for it (default). */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
/** Largest message a client may send (it has nothing to say). */
const MAX_CLIENT_MESSAGE_BYTES = 4096;

/** The close code of a watch that failed with `error`. */
export function closeCodeOf(error: unknown): number {
  const code = error instanceof DoppelError ? error.code : ErrorCode.Internal;
  if (code === ErrorCode.ResourceExhausted) return CLOSE.tryAgainLater;
  if (code === ErrorCode.Unavailable) return CLOSE.goingAway;
  if (code === ErrorCode.PermissionDenied || code === ErrorCode.Unauthenticated) return CLOSE.policy;
  return CLOSE.internal;
}

/** `CODE: message`, cut to fit a close frame. */
function closeReason(error: unknown): string {
  const doppel = error instanceof DoppelError ? error : undefined;
  let text = doppel ? `${doppel.code}: ${doppel.message}` : "INTERNAL: internal error";
  while (Buffer.byteLength(text) > MAX_REASON_BYTES) text = `${text.slice(0, -2)}…`;
  return text;
}

/** A WebSocket as a watch's sink: backpressure from `bufferedAmount`, one way to close. */
class SocketSink implements WatchSink<string> {
  #closed = false;
  readonly #onClose: (() => void)[] = [];
  readonly #waiters = new Set<(open: boolean) => void>();

  constructor(
    private readonly socket: WebSocket,
    private readonly maxBufferedBytes: number,
  ) {
    socket.on("close", () => this.#close());
  }

  get open(): boolean {
    return !this.#closed && this.socket.readyState === this.socket.OPEN;
  }

  write(message: string): boolean {
    if (!this.open) return false;
    this.socket.send(message, () => this.#wake());
    return this.socket.bufferedAmount < this.maxBufferedBytes;
  }

  drained(): Promise<boolean> {
    if (!this.open) return Promise.resolve(false);
    if (this.socket.bufferedAmount < this.maxBufferedBytes) return Promise.resolve(true);
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  fail(error: unknown): void {
    if (this.#closed) return;
    const code = closeCodeOf(error);
    const reason = closeReason(error);
    this.#close();
    try {
      this.socket.close(code, reason);
    } catch {
      this.socket.terminate();
    }
  }

  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#onClose.push(fn);
  }

  #wake(): void {
    if (this.#waiters.size === 0) return;
    const open = this.open;
    if (open && this.socket.bufferedAmount >= this.maxBufferedBytes) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const resolve of waiters) resolve(open);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const resolve of waiters) resolve(false);
    for (const fn of this.#onClose.splice(0)) fn();
  }
}

/** The request's credentials, with `access_token` standing in for a missing Authorization header. */
function watchCredentials(request: FastifyRequest): CallCredentials {
  const base = requestCredentials(request);
  const token = (request.query as Record<string, unknown> | undefined)?.["access_token"];
  return {
    get authorization() {
      const headers = base.authorization;
      if (headers.length > 0 || token === undefined) return headers;
      return [typeof token === "string" ? `Bearer ${token}` : token];
    },
    get peerCertificate() {
      return base.peerCertificate;
    },
    get peer() {
      return base.peer;
    },
    hint: "send 'Authorization: Bearer <API key>' or ?access_token=<API key>",
  };
}

interface Admitted {
  readonly permit: Permit | undefined;
}
const ADMITTED = Symbol("doppel.watch.admitted");
type AdmittedRequest = FastifyRequest & { [ADMITTED]?: Admitted };

const PATH = "/v1/twins/{type}/{id}/watch";

/** The watch routes (a {@link WebModule} of the web server). */
export function watchModule(options: { maxBufferedBytes?: number } = {}): WebModule {
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  return {
    paths: {
      [PATH]: {
        get: {
          operationId: "watchTwin",
          summary:
            "WebSocket: the twin's current state, then every change ({twin, events}), versions strictly increasing",
          tags: ["twins"],
          description:
            "Upgrade to a WebSocket. Credential: Authorization: Bearer <key>, or ?access_token=<key>. " +
            "A client too slow to read is closed with 1013 (RESOURCE_EXHAUSTED); the server stopping closes with 1001.",
          parameters: [
            { name: "type", in: "path", required: true, schema: jsonSchemaOf(typeName, "input") },
            { name: "id", in: "path", required: true, schema: jsonSchemaOf(twinId, "input") },
            { name: "access_token", in: "query", required: false, schema: { type: "string" } },
          ],
          responses: {
            "101": { description: "switching to the WebSocket protocol" },
            ...Object.fromEntries(
              ["400", "401", "403", "429"].map((status) => [
                status,
                {
                  description: "refused before the upgrade",
                  content: { [PROBLEM_JSON]: { schema: { $ref: "#/components/schemas/Problem" } } },
                },
              ]),
            ),
          },
        },
      },
    },
    async register(app: FastifyInstance, ctx: WebContext) {
      await app.register(websocket, {
        options: { maxPayload: MAX_CLIENT_MESSAGE_BYTES },
        preClose(done) {
          for (const client of this.websocketServer.clients) {
            client.close(
              CLOSE.goingAway,
              "UNAVAILABLE: the server is shutting down; watch again on another node",
            );
          }
          done();
        },
      });
      app.route({
        method: "GET",
        url: "/v1/twins/:type/:id/watch",
        // Before the upgrade: authenticate, authorize, admit (a refusal is an HTTP problem).
        preValidation: async (request, reply) => {
          try {
            const params = request.params as { type: string; id: string };
            const credentials = watchCredentials(request);
            // The twin is parsed while authorizing, after authentication: a stranger learns
            // nothing of what it sent (as for every route).
            const caller = admitCaller(
              ctx.security,
              credentials,
              { scope: "read", target: () => twinRef(params.type, params.id) },
              undefined,
            );
            const permit = admitWork(ctx.admission, "watch", credentials, caller);
            (request as AdmittedRequest)[ADMITTED] = { permit };
          } catch (error) {
            return sendProblem(reply, ctx, `GET ${PATH}`, error);
          }
        },
        handler: async (request, reply) => {
          (request as AdmittedRequest)[ADMITTED]?.permit?.release();
          return sendProblem(
            reply,
            ctx,
            `GET ${PATH}`,
            new InvalidArgument("this is a WebSocket endpoint: connect with 'Upgrade: websocket'"),
          );
        },
        wsHandler: (socket, request) => {
          const permit = (request as AdmittedRequest)[ADMITTED]?.permit;
          const sink = new SocketSink(socket, maxBufferedBytes);
          sink.onClose(() => permit?.release());
          socket.on("message", () => undefined);
          const params = request.params as { type: string; id: string };
          const watch = new TwinWatch<string>(ctx, sink, (view, events) =>
            JSON.stringify({ twin: twinJson(view), events: events.map(eventJson) }),
          );
          watch.start({ type: params.type, id: params.id }).catch((error: unknown) => sink.fail(error));
        },
      });
    },
  };
}
