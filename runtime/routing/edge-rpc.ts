/**
 * Commands routed down to a thick edge (docs/edge.md): a twin an edge owns is read-only in the
 * cloud's store (core/edge-owner.ts), so the cloud forwards its commands and desired updates to
 * the edge's node over NATS on `doppel.edge.<edge>.rpc` (the leaf link carries it), and the edge's
 * engine, the twin's only writer, applies them. The request is the node-RPC one (protocol.ts),
 * with the caller's principal label (recorded on the edge's events: the audit trail) and the time
 * the caller still waits.
 *
 * Trust: the cloud authenticated and authorized the caller (scope and target) before the call got
 * here; the edge does not check again (it has none of the cloud's keys). It refuses only what is
 * not its own: types outside its edge types, and ops other than invoke and desired. The subject is
 * reachable with node credentials only: devices' permissions (devices/auth/device-permissions.ts)
 * allow their own twin's subjects and nothing else.
 *
 * While the link is down the cloud's server has no interest on the subject, so NATS answers
 * no-responders at once and the call fails with `UNAVAILABLE` naming the edge
 * (`details.reason = "edge-unreachable"`): nothing was sent.
 */
import type { Transport } from "../../cluster/transport/transport.ts";
import { TransportError } from "../../cluster/transport/transport.ts";
import type { Clock } from "../core/clock.ts";
import { checkEdgeName, isEdgeName } from "../core/edge-name.ts";
import {
  DeadlineExceeded,
  DoppelError,
  ErrorCode,
  FailedPrecondition,
  InvalidArgument,
  Unavailable,
  type WireError,
} from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import type {
  ChangeListener,
  EventRecord,
  HistoryRange,
  TelemetrySample,
  TwinView,
  ViewPage,
} from "../core/records.ts";
import type {
  InvokeOptions,
  InvokeResult,
  QueryOptions,
  ReportOptions,
  ReportResult,
  TelemetryQuery,
  TwinApi,
} from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import { activeContext, injectContext } from "../observability/tracing.ts";
import { type NodeRpcServer, parseRequest, serveRequests } from "./node-rpc.ts";
import { decodeReply, type RpcRequest } from "./protocol.ts";

/** The subject the nodes of edge `edge` answer routed-down commands on. */
export function edgeRpcSubject(edge: string): string {
  return `doppel.edge.${checkEdgeName(edge)}.rpc`;
}

/** Answers routed-down commands at the edge on `twins` (the edge node's own API). */
export function serveEdgeRpc(options: {
  readonly transport: Transport;
  readonly edge: string;
  readonly twins: TwinApi;
  /** The edge's twin types; a request for another type is refused. Absent: every type the node runs. */
  readonly types?: readonly string[];
  readonly clock: Clock;
  readonly logger: Logger;
}): NodeRpcServer {
  const { twins, clock, edge } = options;
  const types = options.types && new Set(options.types);
  return serveRequests(
    options.transport,
    edgeRpcSubject(edge),
    options.logger,
    async (message) => {
      const request = parseRequest(message.data);
      if (request.op !== "invoke" && request.op !== "desired") {
        throw new InvalidArgument(`edge ${edge} takes routed invoke and desired requests only`);
      }
      if (types && !types.has(request.ref.type)) {
        throw new FailedPrecondition(`edge ${edge} does not run twins of type '${request.ref.type}'`, {
          reason: "not-edge-type",
          edge,
        });
      }
      const common = {
        deadline: clock.now() + request.timeoutMs,
        ...present({
          expectedVersion: request.expectedVersion,
          causation: request.causation,
          principal: request.principal,
        }),
      };
      return request.op === "invoke"
        ? twins.invoke(request.ref, request.command, request.args, {
            ...common,
            ...present({ chain: request.chain }),
          })
        : twins.updateDesired(request.ref, request.patch, common);
    },
    // Several nodes of one edge: one of them takes each request (its API routes to the owner).
    { queue: "doppel-edge-rpc" },
  );
}

/** The edge named by an `edge-owned` refusal, else `undefined`. */
function edgeOwning(error: unknown): string | undefined {
  if (!(error instanceof DoppelError) || error.code !== ErrorCode.FailedPrecondition) return undefined;
  const edge = error.details?.["edge"];
  return error.details?.["reason"] === "edge-owned" && typeof edge === "string" && isEdgeName(edge)
    ? edge
    : undefined;
}

const encoder = new TextEncoder();

/**
 * The cloud's {@link TwinApi} with routing down: a command or desired update the inner API refuses
 * as `edge-owned` is sent to the owning edge, and the edge's answer returned. Edge ownership is
 * permanent (the store's fencing), so the twins found edge-owned are remembered (up to
 * `knownLimit`, oldest forgotten first) and their later calls go down directly. Reads, reports
 * and everything else are the inner API's (the cloud's replicated copy).
 */
export class EdgeRoutedTwins implements TwinApi {
  readonly #known = new Map<string, string>();

  constructor(
    private readonly inner: TwinApi,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: { readonly defaultTimeoutMs: number; readonly knownLimit?: number },
  ) {}

  async #write<T>(
    ref: TwinRef,
    options: InvokeOptions,
    here: () => Promise<T>,
    request: (timeoutMs: number) => RpcRequest,
  ): Promise<T> {
    const key = refKey(ref);
    let edge = this.#known.get(key);
    if (edge === undefined) {
      try {
        return await here();
      } catch (error) {
        edge = edgeOwning(error);
        if (edge === undefined) throw error;
        this.#remember(key, edge);
      }
    }
    const until = options.deadline ?? this.clock.now() + this.options.defaultTimeoutMs;
    const timeoutMs = until - this.clock.now();
    if (timeoutMs <= 0)
      throw new DeadlineExceeded(`${key}: the deadline passed before it was sent to edge ${edge}`);
    return (await this.#send(ref, edge, request(timeoutMs), timeoutMs)) as T;
  }

  #remember(key: string, edge: string): void {
    this.#known.delete(key);
    this.#known.set(key, edge);
    if (this.#known.size > (this.options.knownLimit ?? 100_000)) {
      const oldest = this.#known.keys().next().value;
      if (oldest !== undefined) this.#known.delete(oldest);
    }
  }

  async #send(ref: TwinRef, edge: string, request: RpcRequest, timeoutMs: number): Promise<unknown> {
    const headers = new Map<string, string>();
    injectContext(headers, activeContext());
    let data: Uint8Array;
    try {
      data = (
        await this.transport.request(edgeRpcSubject(edge), encoder.encode(JSON.stringify(request)), {
          timeoutMs,
          headers,
        })
      ).data;
    } catch (error) {
      if (error instanceof TransportError && error.failure === "no-responders") {
        throw new Unavailable(
          `${refKey(ref)} is owned by edge ${edge}, which cannot be reached now (its link to the cloud is down, or no node of it is running): nothing was sent; retry once the link is back`,
          { reason: "edge-unreachable", edge },
        );
      }
      if (error instanceof TransportError && error.failure === "timeout") {
        throw new DeadlineExceeded(
          `edge ${edge} did not answer ${request.op} on ${refKey(ref)} within ${Math.round(timeoutMs)} ms: it may or may not have been applied at the edge`,
          { retry: "outcome-unknown", edge },
        );
      }
      throw new Unavailable(`call to edge ${edge} failed: ${(error as Error).message}`, {
        reason: "edge-unreachable",
        edge,
      });
    }
    const reply = decodeReply(data);
    if ("error" in reply) throw DoppelError.fromWire(reply.error as WireError);
    return reply.ok;
  }

  invoke(
    ref: TwinRef,
    command: string,
    args: JsonObject,
    options: InvokeOptions = {},
  ): Promise<InvokeResult> {
    return this.#write(
      ref,
      options,
      () => this.inner.invoke(ref, command, args, options),
      (timeoutMs) => ({
        op: "invoke",
        ref,
        command,
        args: args ?? {},
        timeoutMs,
        ...present({
          expectedVersion: options.expectedVersion,
          chain: options.chain,
          causation: options.causation,
          principal: options.principal,
        }),
      }),
    );
  }

  updateDesired(ref: TwinRef, patch: JsonObject, options: InvokeOptions = {}): Promise<TwinView> {
    return this.#write(
      ref,
      options,
      () => this.inner.updateDesired(ref, patch, options),
      (timeoutMs) => ({
        op: "desired",
        ref,
        patch,
        timeoutMs,
        ...present({
          expectedVersion: options.expectedVersion,
          causation: options.causation,
          principal: options.principal,
        }),
      }),
    );
  }

  get(ref: TwinRef): Promise<TwinView> {
    return this.inner.get(ref);
  }

  /** Reports stay the cloud's: a device of an edge twin reports at the edge (`edge-owned` here). */
  report(ref: TwinRef, patch: JsonObject, options?: ReportOptions): Promise<ReportResult> {
    return this.inner.report(ref, patch, options);
  }

  query(type: string, options?: QueryOptions): Promise<ViewPage> {
    return this.inner.query(type, options);
  }

  history(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    return this.inner.history(ref, range);
  }

  watch(ref: TwinRef, listener: ChangeListener): () => void {
    return this.inner.watch(ref, listener);
  }

  recordTelemetry(
    ref: TwinRef,
    samples: readonly { at: number; metrics: Readonly<Record<string, number>>; key?: string }[],
  ): Promise<void> {
    return this.inner.recordTelemetry(ref, samples);
  }

  telemetry(ref: TwinRef, query: TelemetryQuery): Promise<TelemetrySample[]> {
    return this.inner.telemetry(ref, query);
  }
}
