/**
 * Tracing (OpenTelemetry). Trace context travels in W3C `traceparent` headers: in gRPC metadata
 * from services, in NATS headers between devices, nodes and ingress. Spans: `rpc <method>` (gateway
 * and node-to-node calls), `ingress <channel>` (device messages), `turn <kind>` (one twin turn),
 * `persist` (one group-commit store call).
 *
 * Tracing is off unless a node is configured for it (`tracing.enabled`; the CLI sets it from `DOPPEL_TRACES`): the
 * OpenTelemetry API is then a no-op and costs nothing. Once installed, spans are exported only
 * when an exporter is given (`"console"` prints them; tests pass an in-memory exporter); trace ids
 * are on log lines of traced work either way.
 */
import {
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  ConsoleSpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { DoppelError } from "../core/errors.ts";

export { type Context, SpanKind };

let installed: BasicTracerProvider | undefined;
/** Whether the installed provider exports spans (then every piece of work starts or continues a trace). */
let exporting = false;
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Installs the process-wide tracer provider, context manager and propagator (once; later calls
 * add their exporter to the same provider only if none was installed before).
 */
export function installTracing(exporter?: SpanExporter | "console"): void {
  if (installed) return;
  const chosen = exporter === "console" ? new ConsoleSpanExporter() : exporter;
  // Without an exporter nothing starts a trace (recording spans nobody reads costs turns), but
  // a trace a caller started (traceparent in gRPC metadata or NATS headers) is still continued.
  exporting = chosen !== undefined;
  installed = new BasicTracerProvider({
    spanProcessors: chosen ? [new SimpleSpanProcessor(chosen)] : [],
    sampler: new ParentBasedSampler({ root: chosen ? new AlwaysOnSampler() : new AlwaysOffSampler() }),
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(installed);
}

/** Doppel's tracer. */
export function tracer() {
  return trace.getTracer("doppel");
}

/** Writes the active (or given) trace context into string headers. */
export function injectContext(headers: Map<string, string>, from: Context = context.active()): void {
  propagation.inject(from, headers, { set: (carrier, key, value) => carrier.set(key, value) });
}

/** Reads a trace context from string headers (or metadata values). */
export function extractContext(get: (key: string) => string | undefined): Context {
  return propagation.extract(context.active(), undefined, {
    get: (_carrier, key) => get(key),
    keys: () => ["traceparent", "tracestate"],
  });
}

/** The active context, to carry work across a queue (a twin's mailbox). */
export function activeContext(): Context {
  return context.active();
}

/** Whether tracing is installed: when not, callers skip building span names and attributes. */
export function tracingOn(): boolean {
  return installed !== undefined;
}

/**
 * Whether work whose parent is `parent` (default: the active context) gets a span: when spans are
 * exported, always; when tracing is installed without an exporter, only to continue a trace the
 * caller started (a valid span context in `parent`). Work that gets none is run without a span and
 * without switching context, so an untraced device report on a node with tracing enabled costs
 * no span objects and a synchronous turn stays synchronous.
 */
export function traces(parent: Context = context.active()): boolean {
  if (!installed) return false;
  if (exporting) return true;
  const spanContext = trace.getSpanContext(parent);
  return spanContext !== undefined && isSpanContextValid(spanContext);
}

/**
 * The trace context a caller sent (read with `get` from its headers or metadata) when the work
 * it starts gets a span ({@link traces}), else `undefined`; with tracing off the headers are not
 * read at all.
 */
export function tracedParent(get: (key: string) => string | undefined): Context | undefined {
  if (!installed) return undefined;
  const parent = extractContext(get);
  return traces(parent) ? parent : undefined;
}

/**
 * Like {@link inSpan}, for work that may finish at once: when `fn` returns a value (not a promise)
 * the span ends there and the value is returned as it is, with no promise made; a promise is
 * followed to its end.
 */
export function inSpanSync<T>(
  name: string,
  kind: SpanKind,
  attributes: Record<string, string | number | boolean>,
  fn: (span: Span) => T | Promise<T>,
  parent: Context = context.active(),
): T | Promise<T> {
  if (!installed) return fn(NO_SPAN);
  const span = tracer().startSpan(name, { kind, attributes }, parent);
  let result: T | Promise<T>;
  try {
    result = context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    endFailed(span, error);
    throw error;
  }
  if (!isThenable(result)) {
    span.end();
    return result;
  }
  return Promise.resolve(result).then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      endFailed(span, error);
      throw error;
    },
  );
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

function endFailed(span: Span, error: unknown): void {
  const failure = DoppelError.from(error);
  span.setAttribute("doppel.error_code", failure.code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
  span.end();
}

/**
 * Runs `fn` in a new span named `name` (child of `parent`, or of the active context), ending it
 * when `fn` settles and recording a failure's code and message (as {@link inSpanSync}, always
 * answering with a promise).
 */
export async function inSpan<T>(
  name: string,
  kind: SpanKind,
  attributes: Record<string, string | number | boolean>,
  fn: (span: Span) => Promise<T>,
  parent: Context = context.active(),
): Promise<T> {
  return inSpanSync(name, kind, attributes, fn, parent);
}

/** `{ trace_id, span_id }` of the active span, for log lines; empty when untraced. */
export function logTraceFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  return traceFlags === 0 && traceId === "00000000000000000000000000000000"
    ? {}
    : { trace_id: traceId, span_id: spanId };
}
