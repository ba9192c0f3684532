/**
 * `LocalTwins`: the {@link TwinApi} of twins this node runs itself. It validates every input
 * (ids, registered type, JSON size and depth, schemas, command arguments) before anything is
 * queued, so bad input never activates a twin and never writes anything; then it hands a
 * message to the engine and waits for the persisted outcome, within the caller's deadline.
 */

import { DeadlineExceeded, InvalidArgument, NotFound } from "../core/errors.ts";
import { refKey, type TwinRef, twinRef, validateType } from "../core/ids.ts";
import { type JsonLimits, type JsonObject, requireJsonObject } from "../core/json.ts";
import type { Mutable } from "../core/present.ts";
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
import { downsample } from "../persistence/downsample.ts";
import { parseFilter } from "../query/filter.ts";
import type { Engine } from "./engine.ts";
import { type Answer, describeMessage } from "./envelope.ts";
import type {
  CommandMessage,
  DesiredMessage,
  ReportedMessage,
  TurnOutcome,
  TwinMessage,
} from "./messages.ts";
import { toView } from "./twin-data.ts";
import type { TwinType } from "./twin-type.ts";

export interface LocalTwinsOptions {
  readonly json: JsonLimits;
  /** Deadline applied when a caller gives none. */
  readonly defaultTimeoutMs: number;
  readonly maxQueryLimit: number;
  readonly maxHistoryLimit: number;
  readonly maxTelemetryLimit: number;
}

const MESSAGE_ID = /^[\x21-\x7e]{1,128}$/;

function checkVersion(version: number | undefined): number | undefined {
  if (version === undefined) return undefined;
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new InvalidArgument(`expected version must be a non-negative integer, got ${version}`);
  }
  return version;
}

function checkLimit(limit: number | undefined, fallback: number, max: number, what: string): number {
  if (limit === undefined || limit === 0) return fallback;
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw new InvalidArgument(`${what} must be a positive integer`);
  if (limit > max) throw new InvalidArgument(`${what} is ${limit}; the largest allowed is ${max}`, { max });
  return limit;
}

export class LocalTwins implements TwinApi {
  constructor(
    private readonly engine: Engine,
    private readonly options: LocalTwinsOptions,
  ) {}

  #ref(ref: TwinRef): TwinRef {
    const checked = twinRef(ref.type, ref.id);
    this.engine.registry.get(checked.type);
    return checked;
  }

  #deadline(deadline: number | undefined): number {
    return deadline ?? this.engine.clock.now() + this.options.defaultTimeoutMs;
  }

  /**
   * Dispatches `message` to twin `ref`; the wait for its outcome ends at the message's deadline
   * (the engine arms it with the message: see `envelope.ts`), the turn itself still completes. A
   * deadline that has already passed refuses before anything is dispatched (a message dispatched
   * then would be refused by the twin with nobody left to hear it).
   */
  #dispatch<T>(
    type: TwinType,
    ref: TwinRef,
    message: TwinMessage,
    deadline: number,
    given: number | undefined,
    answer: Answer<T>,
  ): Promise<T> {
    // Only a caller's own deadline can have passed already (the default one is ahead of now).
    if (given !== undefined && deadline <= this.engine.clock.now()) {
      const what = describeMessage(refKey(ref), message);
      return Promise.reject(new DeadlineExceeded(`${what}: deadline already passed`));
    }
    return this.engine.dispatch(type, ref.id, message, answer);
  }

  async get(ref: TwinRef): Promise<TwinView> {
    const checked = this.#ref(ref);
    const resident = this.engine.resident(refKey(checked));
    if (resident?.status === "active" && resident.committedData.seq > 0) {
      return toView(checked.type, checked.id, resident.committedData);
    }
    const view = await this.engine.store.readView(checked);
    if (!view)
      throw new NotFound(`twin ${refKey(checked)} not found (it has no events yet)`, {
        twin: refKey(checked),
      });
    return view;
  }

  async invoke(
    ref: TwinRef,
    command: string,
    args: JsonObject,
    options: InvokeOptions = {},
  ): Promise<InvokeResult> {
    const checked = this.#ref(ref);
    const type = this.engine.registry.get(checked.type);
    if (typeof command !== "string" || command.length === 0)
      throw new InvalidArgument("command name is empty");
    const parsed = type.parseCommand(command, requireJsonObject(args ?? {}, "arguments", this.options.json));
    const expectedVersion = checkVersion(options.expectedVersion);
    const deadline = this.#deadline(options.deadline);
    const message: Mutable<CommandMessage> = {
      kind: "command",
      name: command,
      args: parsed,
      chain: options.chain ?? [],
      deadline,
    };
    if (expectedVersion !== undefined) message.expectedVersion = expectedVersion;
    withOrigin(message, options.causation, options);
    return this.#dispatch(type, checked, message, deadline, options.deadline, invokeResult);
  }

  async updateDesired(ref: TwinRef, patch: JsonObject, options: InvokeOptions = {}): Promise<TwinView> {
    const checked = this.#ref(ref);
    const type = this.engine.registry.get(checked.type);
    const body = requireJsonObject(patch, "desired patch", this.options.json);
    type.checkDesired(body);
    const expectedVersion = checkVersion(options.expectedVersion);
    const deadline = this.#deadline(options.deadline);
    const message: Mutable<DesiredMessage> = { kind: "desired", patch: body, deadline };
    if (expectedVersion !== undefined) message.expectedVersion = expectedVersion;
    withOrigin(message, options.causation, options);
    return this.#dispatch(type, checked, message, deadline, options.deadline, (outcome) =>
      toView(checked.type, checked.id, outcome.data),
    );
  }

  /**
   * Not an async function: the message's one promise is the engine's, settled with the reply
   * (see `Answer`); input refused here is a rejected promise all the same.
   */
  report(ref: TwinRef, patch: JsonObject, options: ReportOptions = {}): Promise<ReportResult> {
    try {
      return this.#report(ref, patch, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #report(ref: TwinRef, patch: JsonObject, options: ReportOptions): Promise<ReportResult> {
    const checked = this.#ref(ref);
    const type = this.engine.registry.get(checked.type);
    const body = type.parseReported(requireJsonObject(patch, "reported patch", this.options.json));
    const causation = options.messageId ?? options.causation;
    if (causation !== undefined && !MESSAGE_ID.test(causation)) {
      throw new InvalidArgument("message id must be 1 to 128 printable ASCII characters without spaces");
    }
    const seq = checkStamp(options.seq, "report seq", 1);
    const at = checkStamp(options.at, "report time (at)", 0);
    const deadline = this.#deadline(options.deadline);
    const message: Mutable<ReportedMessage> = { kind: "reported", patch: body, deadline };
    if (seq !== undefined) message.seq = seq;
    if (at !== undefined) message.at = at;
    withOrigin(message, causation, options);
    return this.#dispatch(type, checked, message, deadline, options.deadline, reportResult);
  }

  async query(type: string, options: QueryOptions = {}): Promise<ViewPage> {
    this.engine.registry.get(validateType(type));
    const limit = checkLimit(options.limit, 100, this.options.maxQueryLimit, "limit");
    const filter = options.where ? parseFilter(options.where) : undefined;
    return this.engine.store.queryViews(type, {
      limit,
      ...(filter ? { match: (view: TwinView) => filter.matches(view) } : {}),
      ...(options.pageToken ? { pageToken: options.pageToken } : {}),
    });
  }

  async history(ref: TwinRef, range: HistoryRange): Promise<EventRecord[]> {
    const checked = this.#ref(ref);
    const limit = checkLimit(range.limit, 1000, this.options.maxHistoryLimit, "limit");
    for (const [name, value] of Object.entries(range)) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
        throw new InvalidArgument(`history ${name} must be a non-negative integer, got ${value}`);
      }
    }
    return this.engine.store.readHistory(checked, { ...range, limit });
  }

  watch(ref: TwinRef, listener: ChangeListener): () => void {
    const checked = this.#ref(ref);
    return this.engine.feed.subscribe(refKey(checked), listener);
  }

  async recordTelemetry(
    ref: TwinRef,
    samples: readonly { at: number; metrics: Readonly<Record<string, number>>; key?: string }[],
  ): Promise<void> {
    const checked = this.#ref(ref);
    const checkedSamples: TelemetrySample[] = samples.map((sample, i) => {
      if (!Number.isSafeInteger(sample.at) || sample.at < 0) {
        throw new InvalidArgument(`telemetry sample ${i}: 'at' must be epoch milliseconds`);
      }
      const metrics = requireJsonObject(sample.metrics, `telemetry sample ${i} metrics`, this.options.json);
      for (const [name, value] of Object.entries(metrics)) {
        if (typeof value !== "number" || !Number.isFinite(value)) {
          throw new InvalidArgument(`telemetry sample ${i}: metric '${name}' must be a finite number`);
        }
      }
      const base = { ref: checked, at: sample.at, metrics: metrics as Record<string, number> };
      return typeof sample.key === "string" && sample.key.length > 0 ? { ...base, key: sample.key } : base;
    });
    if (checkedSamples.length > 0) await this.engine.store.appendTelemetry(checkedSamples);
  }

  async telemetry(ref: TwinRef, query: TelemetryQuery): Promise<TelemetrySample[]> {
    const checked = this.#ref(ref);
    const limit = checkLimit(query.limit, 10_000, this.options.maxTelemetryLimit, "limit");
    if (!(query.since <= query.until))
      throw new InvalidArgument("telemetry range: 'since' must not be after 'until'");
    if (query.intervalMs !== undefined && !(query.intervalMs >= 1)) {
      throw new InvalidArgument("telemetry interval must be at least 1 ms");
    }
    const raw = await this.engine.store.readTelemetry(checked, {
      since: query.since,
      until: query.until,
      limit: query.intervalMs === undefined ? limit : this.options.maxTelemetryLimit * 10,
    });
    return query.intervalMs === undefined ? raw : downsample(raw, query.intervalMs).slice(0, limit);
  }
}

function reportResult(outcome: TurnOutcome): ReportResult {
  return outcome.stale
    ? { version: outcome.data.seq, duplicate: outcome.duplicate, stale: true }
    : { version: outcome.data.seq, duplicate: outcome.duplicate };
}

function invokeResult(outcome: TurnOutcome): InvokeResult {
  return { result: outcome.result, version: outcome.data.seq };
}

/** Sets a message's causation, (checked) principal and twin quota, when given: absent fields stay absent. */
function withOrigin(
  message: { causation?: string; principal?: string; maxTwins?: number },
  causation: string | undefined,
  options: { readonly principal?: unknown; readonly maxTwins?: unknown },
): void {
  if (causation !== undefined) message.causation = causation;
  const principal = checkPrincipal(options.principal);
  if (principal !== undefined) message.principal = principal;
  const maxTwins = checkQuota(options.maxTwins);
  if (maxTwins !== undefined) message.maxTwins = maxTwins;
}

/** A principal label as the audit trail records it: 1 to 256 printable ASCII characters. */
const PRINCIPAL = /^[\x20-\x7e]{1,256}$/;

function checkPrincipal(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !PRINCIPAL.test(value)) {
    throw new InvalidArgument("principal must be 1 to 256 printable ASCII characters");
  }
  return value;
}

/** A twin quota: absent, or a non-negative safe integer. */
function checkQuota(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgument("maxTwins must be a non-negative integer", { value: String(value) });
  }
  return value;
}

/** A device stamp (sequence number or epoch ms): absent, or a safe integer of at least `min`. */
function checkStamp(value: unknown, what: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgument(`${what} must be an integer from ${min} to ${Number.MAX_SAFE_INTEGER}`, {
      value: String(value),
    });
  }
  return value;
}
