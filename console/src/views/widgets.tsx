/** Small pieces every view shares: error notes, JSON blocks, times. */
import type { ApiError, Json } from "../api.ts";

/** An error as the operator should read it: what failed, the node's message and its stable code. */
export function ErrorNote({ error, title }: { error: ApiError | Error; title?: string }) {
  const code = "code" in error ? (error as ApiError).code : undefined;
  return (
    <div class="error" role="alert">
      {title && <strong>{title}: </strong>}
      {error.message}
      {code && <span class="code"> ({code})</span>}
    </div>
  );
}

/** A labelled, read-only JSON document (scrollable, so reachable by keyboard). */
export function JsonBlock({ label, value, id }: { label: string; value: Json | undefined; id: string }) {
  return (
    <section class="json" aria-labelledby={`${id}-label`}>
      <h3 id={`${id}-label`}>{label}</h3>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable block must be reachable by keyboard (WCAG 2.1.1) */}
      <pre data-testid={id} tabIndex={0}>
        {JSON.stringify(value ?? {}, null, 2)}
      </pre>
    </section>
  );
}

/** A timestamp as local time, with the exact ISO value for machines and tooltips. */
export function Time({ at }: { at: string | undefined }) {
  if (!at) return <span>—</span>;
  const date = new Date(at);
  return (
    <time dateTime={date.toISOString()} title={date.toISOString()}>
      {date.toLocaleString()}
    </time>
  );
}
