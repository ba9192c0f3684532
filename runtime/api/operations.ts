/**
 * The operations services may call, each defined once for every protocol: its name, the scope
 * it needs, and what it asks of the {@link TwinApi} (with the caller's deadline and audit label).
 * The gRPC gateway and the REST API each decode their request into an operation's input and
 * encode its output; {@link perform} runs the shared pipeline between the two (authenticate →
 * authorize(scope, target) → rate limit → admission → run), so the protocols cannot drift apart.
 */
import type { Admission } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import type { TwinRef } from "../core/ids.ts";
import type { JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import { principalLabel, type Scope } from "../core/principal.ts";
import type { EventRecord, HistoryRange, TelemetrySample, TwinView, ViewPage } from "../core/records.ts";
import type { InvokeResult, ReportResult, TwinApi } from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import { admitCaller, admitWork, type CallCredentials, type Caller, type CallSecurity } from "./callers.ts";

/** A twin type as `ListTypes` reports it. */
export interface TypeInfo {
  readonly name: string;
  readonly commands: readonly string[];
}

/** A twin type with the JSON Schemas of its command arguments and of its reported state (REST `GET /v1/types/{type}`). */
export interface TypeDetail extends TypeInfo {
  /** Command name → JSON Schema (draft 2020-12) of its arguments, from the twin class's zod schemas. */
  readonly commandSchemas: Readonly<Record<string, JsonObject>>;
  /** JSON Schema of a reported patch, when the class declares `static reported`. */
  readonly reportedSchema?: JsonObject;
  /** JSON Schema of a desired patch (the class's `static desired`, else its `reported`). */
  readonly desiredSchema?: JsonObject;
}

/** What every operation may read: the twins, the node's types and cluster, limits and security. */
export interface ServiceContext {
  readonly api: TwinApi;
  readonly types: () => readonly TypeInfo[];
  /** The cluster as this node sees it (`GetCluster`). */
  readonly cluster: () => Promise<ClusterView>;
  readonly logger: Logger;
  /** The node's clock: deadlines handed to the `TwinApi` are on this clock. */
  readonly clock: Clock;
  /** Events read from the store per `TwinApi.history` call while streaming history. */
  readonly historyPageSize: number;
  /** Changes a watch may hold for a slow client before it is cut off with RESOURCE_EXHAUSTED. */
  readonly watchBufferLimit: number;
  /** Counts a request refused as invalid input (metrics); optional. */
  readonly rejected?: (code: string) => void;
  /** The node's admission control; absent: every call is admitted. */
  readonly admission?: Admission;
  /** Who may call; absent: no security configured, every caller is anonymous. */
  readonly security?: CallSecurity;
}

/** The caller an operation acts for, and until when its client waits. */
export interface OperationCall {
  readonly caller: Caller;
  /** Epoch ms on the node's clock; absent: no deadline. */
  readonly deadline?: number | undefined;
}

/** One operation: the scope it needs and what it does. */
export interface Operation<In, Out> {
  /** The gRPC method name (also the span and log name). */
  readonly name: string;
  readonly scope: Scope;
  run(ctx: ServiceContext, input: In, call: OperationCall): Promise<Out> | Out;
}

/** The options a write carries: deadline, audit label, expected version. */
function writeOptions(call: OperationCall, expectedVersion?: number) {
  return {
    ...present({ deadline: call.deadline, expectedVersion }),
    principal: principalLabel(call.caller.principal),
    ...present({ maxTwins: call.caller.limits?.maxTwins }),
  };
}

export interface QueryInput {
  readonly type: string;
  readonly where?: string | undefined;
  readonly limit?: number | undefined;
  readonly pageToken?: string | undefined;
}
export interface InvokeInput {
  readonly ref: TwinRef;
  readonly command: string;
  readonly args: JsonObject;
  readonly expectedVersion?: number | undefined;
}
export interface DesiredInput {
  readonly ref: TwinRef;
  readonly patch: JsonObject;
  readonly expectedVersion?: number | undefined;
}
export interface ReportInput {
  readonly ref: TwinRef;
  readonly patch: JsonObject;
  readonly messageId?: string | undefined;
  readonly seq?: number | undefined;
  readonly at?: number | undefined;
}
export interface HistoryInput {
  readonly ref: TwinRef;
  readonly fromVersion?: number | undefined;
  readonly toVersion?: number | undefined;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  /** Most events in all; absent: every one in the range. */
  readonly limit?: number | undefined;
}
export interface TelemetryInput {
  readonly ref: TwinRef;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  readonly limit?: number | undefined;
  readonly intervalMs?: number | undefined;
}

/**
 * A twin's events in `input`'s range, page by page (`ctx.historyPageSize` per store read, the next
 * page starting after the last version seen), so a long history never sits in memory whole.
 */
export async function* historyPages(
  ctx: ServiceContext,
  input: HistoryInput,
): AsyncGenerator<readonly EventRecord[]> {
  const { ref, toVersion } = input;
  const bounds: Omit<HistoryRange, "limit" | "fromVersion"> = {
    ...present({ toVersion, since: input.since, until: input.until }),
  };
  let fromVersion = input.fromVersion;
  let remaining = input.limit ?? Number.POSITIVE_INFINITY;
  while (remaining > 0) {
    const limit = Math.min(ctx.historyPageSize, remaining);
    const page = await ctx.api.history(ref, { ...bounds, ...present({ fromVersion }), limit });
    if (page.length > 0) yield page;
    remaining -= page.length;
    const last = page.at(-1);
    if (last === undefined || page.length < limit) return;
    fromVersion = last.seq + 1;
    if (toVersion !== undefined && fromVersion > toVersion) return;
  }
}

/** Declares an operation (its input and output types checked). */
function operation<In, Out>(definition: Operation<In, Out>): Operation<In, Out> {
  return definition;
}

/** The operations, by name. */
export const OPERATIONS = {
  getTwin: operation<TwinRef, TwinView>({
    name: "GetTwin",
    scope: "read",
    run: (ctx, ref) => ctx.api.get(ref),
  }),

  queryTwins: operation<QueryInput, ViewPage>({
    name: "QueryTwins",
    scope: "read",
    run: (ctx, input) =>
      ctx.api.query(
        input.type,
        present({ where: input.where, limit: input.limit, pageToken: input.pageToken }),
      ),
  }),

  invokeCommand: operation<InvokeInput, InvokeResult>({
    name: "InvokeCommand",
    scope: "command",
    run: (ctx, input, call) =>
      ctx.api.invoke(input.ref, input.command, input.args, writeOptions(call, input.expectedVersion)),
  }),

  updateDesired: operation<DesiredInput, TwinView>({
    name: "UpdateDesired",
    scope: "write",
    run: (ctx, input, call) =>
      ctx.api.updateDesired(input.ref, input.patch, writeOptions(call, input.expectedVersion)),
  }),

  reportState: operation<ReportInput, ReportResult>({
    name: "ReportState",
    scope: "write",
    run: (ctx, input, call) =>
      ctx.api.report(input.ref, input.patch, {
        ...writeOptions(call),
        ...present({ messageId: input.messageId, seq: input.seq, at: input.at }),
      }),
  }),

  listTypes: operation<void, readonly TypeInfo[]>({
    name: "ListTypes",
    scope: "read",
    run: (ctx) => ctx.types(),
  }),

  getCluster: operation<void, ClusterView>({
    name: "GetCluster",
    scope: "admin",
    run: (ctx) => ctx.cluster(),
  }),

  /** One page of history (REST); the gRPC stream reads {@link historyPages} itself. */
  getHistory: operation<HistoryInput, EventRecord[]>({
    name: "GetHistory",
    scope: "read",
    run: async (ctx, input) => {
      const events: EventRecord[] = [];
      for await (const page of historyPages(ctx, input)) events.push(...page);
      return events;
    },
  }),

  getTelemetry: operation<TelemetryInput, TelemetrySample[]>({
    name: "GetTelemetry",
    scope: "read",
    run: (ctx, input) =>
      ctx.api.telemetry(input.ref, {
        since: input.since ?? 0,
        // "Unset: now", inclusive of a sample stamped this very millisecond (stores treat `until` as exclusive).
        until: input.until ?? ctx.clock.now() + 1,
        ...present({ limit: input.limit, intervalMs: input.intervalMs }),
      }),
  }),
} as const;

/** What {@link perform} needs of a request, whatever its protocol. */
export interface OperationRequest {
  readonly credentials: CallCredentials;
  /** The twin or type the request names (authorization), before its body is decoded. */
  readonly target?: TwinRef | { readonly type: string } | undefined;
  readonly deadline?: number | undefined;
}

/**
 * Runs `operation` for a request: authenticates, authorizes (scope and target), rate-limits and
 * admits the caller (class `grpc`: the node's service calls, gRPC and REST alike) before
 * `decode()` builds the input, so a caller without a credential learns nothing from the
 * validation of its request; releases the permit when the operation settles.
 */
export async function perform<In, Out>(
  ctx: ServiceContext,
  operation: Operation<In, Out>,
  request: OperationRequest,
  decode: () => In,
): Promise<Out> {
  const target = request.target;
  const caller = admitCaller(
    ctx.security,
    request.credentials,
    target === undefined ? { scope: operation.scope } : { scope: operation.scope, target: () => target },
    undefined,
  );
  const permit = admitWork(ctx.admission, "grpc", request.credentials, caller);
  try {
    return await operation.run(ctx, decode(), { caller, deadline: request.deadline });
  } finally {
    permit?.release();
  }
}
