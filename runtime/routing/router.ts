/**
 * The router: the {@link TwinApi} of a cluster node. Calls that touch a twin (get, invoke,
 * desired, report) run on this node while it holds the lease of the twin's shard (also while
 * handing the shard over), else go to the node the ring assigns the shard to by a NATS request,
 * and are retried transparently while a shard moves (only failures that happened before any work
 * are retried: `retryability` `"safe"`, see core/errors.ts). A call whose node dies before answering ends within about a
 * second (see `liveness.ts`): reads and reports with a message id run again on the next owner,
 * other calls fail with `UNAVAILABLE` saying their outcome is unknown. Queries, history and
 * telemetry read the store from any node and never activate a twin. Watches subscribe to the
 * twin's change subject, which its owner publishes on, wherever it runs.
 */

import type { Transport } from "../../cluster/transport/transport.ts";
import { TransportError } from "../../cluster/transport/transport.ts";
import type { Clock } from "../core/clock.ts";
import {
  DeadlineExceeded,
  DoppelError,
  InvalidArgument,
  Unavailable,
  type WireError,
} from "../core/errors.ts";
import { type TwinRef, twinRef } from "../core/ids.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import type {
  ChangeListener,
  EventRecord,
  HistoryRange,
  TelemetrySample,
  TwinChange,
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
import type { LocalTwins } from "../engine/local-twins.ts";
import type { TwinRegistry } from "../engine/twin-type.ts";
import { activeContext, injectContext } from "../observability/tracing.ts";
import { GONE, NodeLiveness } from "./liveness.ts";
import type { Placement } from "./placement.ts";
import {
  changeSubject,
  decodeReply,
  nodeSubject,
  notOwner,
  outcomeUnknown,
  type RpcReply,
  type RpcRequest,
} from "./protocol.ts";

export interface RouterOptions {
  /** Deadline applied when a caller gives none. */
  readonly defaultTimeoutMs: number;
  /** First pause between retries while a shard moves (doubles up to 500 ms). */
  readonly retryDelayMs: number;
  /**
   * How often a node that a call is waiting on is checked for being gone (default 1000 ms; see
   * `liveness.ts`).
   */
  readonly livenessEveryMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Whether `request` may run again after its node went away mid-call: reads, and reports with a
 * message id (the twin drops a report it already applied).
 */
function repeatable(request: RpcRequest): boolean {
  return (
    request.op === "get" ||
    (request.op === "report" && (request.messageId !== undefined || request.seq !== undefined))
  );
}

export class Router implements TwinApi {
  readonly #liveness: NodeLiveness;

  constructor(
    private readonly local: LocalTwins,
    private readonly placement: Placement,
    private readonly transport: Transport,
    private readonly shardOf: (type: string, id: string) => number,
    private readonly registry: TwinRegistry,
    private readonly clock: Clock,
    private readonly options: RouterOptions,
  ) {
    this.#liveness = new NodeLiveness(transport, options.livenessEveryMs ?? 1000);
  }

  #check(ref: TwinRef): TwinRef {
    const checked = twinRef(ref.type, ref.id);
    this.registry.get(checked.type);
    return checked;
  }

  async #route<T>(
    ref: TwinRef,
    deadline: number | undefined,
    runLocally: (deadline: number) => Promise<T>,
    request: (timeoutMs: number) => RpcRequest,
  ): Promise<T> {
    const until = deadline ?? this.clock.now() + this.options.defaultTimeoutMs;
    const shard = this.shardOf(ref.type, ref.id);
    let pause = this.options.retryDelayMs;
    let lastRefusal: DoppelError | undefined;
    for (;;) {
      const remaining = until - this.clock.now();
      if (remaining <= 0) {
        throw new DeadlineExceeded(
          `${ref.type}/${ref.id}: no owner of shard ${shard} answered in time${lastRefusal ? ` (${lastRefusal.message})` : ""}`,
        );
      }
      const owner = this.placement.ownerOf(shard);
      try {
        // Holding the shard's lease makes this node's writes safe, whatever the ring says now: a
        // shard being handed over is served here until its lease is released (the new owner
        // refuses until it holds it — sending the call there would only wait for the hand-over,
        // which itself waits for the calls in flight here).
        if (this.placement.owns(shard)) return await runLocally(until);
        if (owner === undefined) throw notOwner(shard, "(no member known)");
        if (owner === this.placement.nodeId) throw notOwner(shard, owner);
        return (await this.#remote(owner, shard, request(remaining), remaining)) as T;
      } catch (error) {
        const failure = DoppelError.from(error);
        if (failure.retryability !== "safe") throw failure;
        lastRefusal = failure;
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(pause, Math.max(1, until - this.clock.now()))),
      );
      pause = Math.min(pause * 2, 500);
    }
  }

  async #remote(owner: string, shard: number, request: RpcRequest, timeoutMs: number): Promise<unknown> {
    const headers = new Map<string, string>();
    injectContext(headers, activeContext());
    let reply: RpcReply;
    try {
      const message = await this.#liveness.watch(
        owner,
        this.transport.request(nodeSubject(owner), encoder.encode(JSON.stringify(request)), {
          timeoutMs,
          headers,
        }),
      );
      if (message === GONE) {
        // Killed mid-call: run a repeatable call again on the shard's next owner; otherwise
        // say plainly that nobody knows whether it was applied.
        if (repeatable(request)) throw notOwner(shard, owner);
        throw outcomeUnknown(owner, `${request.op} on ${request.ref.type}/${request.ref.id}`);
      }
      reply = decodeReply(message.data);
    } catch (error) {
      if (error instanceof TransportError && error.failure === "no-responders") {
        // Nobody received it: the owner is gone or not listening yet. Safe to retry.
        throw notOwner(shard, owner);
      }
      if (error instanceof TransportError && error.failure === "timeout") {
        throw new DeadlineExceeded(`node ${owner} did not answer within ${Math.round(timeoutMs)} ms`);
      }
      throw error instanceof DoppelError
        ? error
        : new Unavailable(`call to node ${owner} failed: ${(error as Error).message}`);
    }
    if ("error" in reply) throw DoppelError.fromWire(reply.error as WireError);
    return reply.ok;
  }

  async get(ref: TwinRef): Promise<TwinView> {
    const checked = this.#check(ref);
    return this.#route(
      checked,
      undefined,
      () => this.local.get(checked),
      () => ({ op: "get", ref: checked }),
    );
  }

  async invoke(
    ref: TwinRef,
    command: string,
    args: JsonObject,
    options: InvokeOptions = {},
  ): Promise<InvokeResult> {
    const checked = this.#check(ref);
    if (!isJsonObject(args ?? {})) throw new InvalidArgument("arguments must be a JSON object");
    return this.#route(
      checked,
      options.deadline,
      (deadline) => this.local.invoke(checked, command, args, { ...options, deadline }),
      (timeoutMs) => ({
        op: "invoke",
        ref: checked,
        command,
        args: args ?? {},
        timeoutMs,
        ...present({
          expectedVersion: options.expectedVersion,
          chain: options.chain,
          causation: options.causation,
          principal: options.principal,
          maxTwins: options.maxTwins,
        }),
      }),
    );
  }

  async updateDesired(ref: TwinRef, patch: JsonObject, options: InvokeOptions = {}): Promise<TwinView> {
    const checked = this.#check(ref);
    return this.#route(
      checked,
      options.deadline,
      (deadline) => this.local.updateDesired(checked, patch, { ...options, deadline }),
      (timeoutMs) => ({
        op: "desired",
        ref: checked,
        patch,
        timeoutMs,
        ...present({
          expectedVersion: options.expectedVersion,
          causation: options.causation,
          principal: options.principal,
          maxTwins: options.maxTwins,
        }),
      }),
    );
  }

  async report(ref: TwinRef, patch: JsonObject, options: ReportOptions = {}): Promise<ReportResult> {
    const checked = this.#check(ref);
    return this.#route(
      checked,
      options.deadline,
      (deadline) => this.local.report(checked, patch, { ...options, deadline }),
      (timeoutMs) => ({
        op: "report",
        ref: checked,
        patch,
        timeoutMs,
        ...present({
          messageId: options.messageId,
          seq: options.seq,
          at: options.at,
          principal: options.principal,
          maxTwins: options.maxTwins,
        }),
      }),
    );
  }

  query(type: string, options?: QueryOptions): Promise<ViewPage> {
    return this.local.query(type, options);
  }

  history(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    return this.local.history(ref, range);
  }

  recordTelemetry(
    ref: TwinRef,
    samples: readonly { at: number; metrics: Readonly<Record<string, number>> }[],
  ): Promise<void> {
    return this.local.recordTelemetry(ref, samples);
  }

  telemetry(ref: TwinRef, query: TelemetryQuery): Promise<TelemetrySample[]> {
    return this.local.telemetry(ref, query);
  }

  watch(ref: TwinRef, listener: ChangeListener): () => void {
    const checked = this.#check(ref);
    const sub = this.transport.subscribe(changeSubject(checked), (message) => {
      let change: TwinChange;
      try {
        change = JSON.parse(decoder.decode(message.data)) as TwinChange;
      } catch {
        return;
      }
      listener(change);
    });
    return () => sub.unsubscribe();
  }
}
