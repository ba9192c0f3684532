/** How the CLI prints things: readable text by default, JSON with `--json`. */

import type { ClusterView } from "../core/cluster-view.ts";
import type { Json } from "../core/json.ts";
import type { TwinView } from "../core/records.ts";
import type { RemoteEvent, TelemetryPoint, WatchedChange } from "../grpc/client.ts";

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : "-");

/** Compact single-line JSON, cut to `width` characters. */
export function compact(value: Json | object, width = 60): string {
  const text = JSON.stringify(value);
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** A twin as a readable block. */
export function formatTwin(view: TwinView): string {
  const block = (name: string, value: object) =>
    `${name.padEnd(9)}${JSON.stringify(value, null, 2).replace(/\n/g, "\n         ")}`;
  return [
    `${view.type}/${view.id}  version ${view.version}  updated ${iso(view.updatedAt)}`,
    block("state", view.state),
    block("reported", view.reported),
    block("desired", view.desired),
    block("delta", view.delta),
  ].join("\n");
}

/** Rows of a table, columns padded to their widest cell. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** Twins of a query as a table. */
export function formatTwinTable(views: readonly TwinView[]): string {
  return table(
    ["ID", "VERSION", "UPDATED", "REPORTED"],
    views.map((v) => [v.id, String(v.version), iso(v.updatedAt), compact(v.reported)]),
  );
}

/** One event as a line. */
export function formatEvent(event: RemoteEvent): string {
  const cause = event.causation ? `  (${event.causation})` : "";
  const by = event.principal ? `  by ${event.principal}` : "";
  return `v${event.seq}  ${iso(event.at)}  ${event.type.padEnd(18)} ${compact(event.data, 100)}${cause}${by}`;
}

/** One telemetry sample as a line. */
export function formatSample(sample: TelemetryPoint): string {
  const metrics = Object.entries(sample.metrics)
    .map(([k, v]) => `${k}=${Math.round(v * 1000) / 1000}`)
    .join(" ");
  return `${iso(sample.at)}  ${metrics}`;
}

/**
 * `--json` output: the objects the client returns, with every time as an RFC 3339 string (UTC,
 * milliseconds), as gRPC's `google.protobuf.Timestamp` gives it in JSON; an unknown time (0) is
 * `null`. Only Doppel's own time fields are converted, never fields inside a twin's data.
 */
const rfc3339 = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : null);

export const jsonOf = {
  twin: (view: TwinView) => ({
    ...view,
    createdAt: rfc3339(view.createdAt),
    updatedAt: rfc3339(view.updatedAt),
  }),
  event: (event: RemoteEvent) => ({ ...event, at: rfc3339(event.at) }),
  sample: (sample: TelemetryPoint) => ({ ...sample, at: rfc3339(sample.at) }),
  change: (change: WatchedChange) => ({
    twin: jsonOf.twin(change.twin),
    events: change.events.map(jsonOf.event),
  }),
  cluster: (view: ClusterView) => ({
    ...view,
    nodes: view.nodes.map((node) => ({
      ...node,
      startedAt: rfc3339(node.startedAt),
      lastHeartbeat: rfc3339(node.lastHeartbeat),
    })),
  }),
};
