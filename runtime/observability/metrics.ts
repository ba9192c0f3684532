/**
 * Metrics (OpenTelemetry), exposed in the Prometheus text format on `/metrics` of a small HTTP
 * server the node owns (`metrics.listen`, default off; port 0 picks a free port).
 *
 * Instruments (all prefixed `doppel_`):
 * - `resident_twins`, `mailbox_depth`, `shards_owned` — gauges read at scrape time;
 * - `activations_total`, `passivations_total`, `turns_total{kind,outcome}` — counters (turns/s is `rate(turns_total)`);
 * - `turn_duration_ms`, `persist_duration_ms` — histograms (one persist = one group-commit store call);
 * - `persisted_events_total`, `rejected_inputs_total{source,code}`, `lease_renewals_total{outcome}`,
 *   `dropped_reports_total{reason}` (acknowledged without applying: `duplicate` message id, `stale` stamp),
 *   `quota_exceeded_total{quota}` (twin creations refused by the creator's `maxTwins`) — counters;
 * - `device_commands_total{outcome}` — counter of twins' commands to their devices: `sent` (attempts),
 *   `answered`, `offline` (nothing listened), `timed_out`, `not_sent` (the node stopping, or its
 *   connection closed or down), `failed` (the device's error or a broken
 *   answer), and of queued commands (`sendToDevice` `queueFor`): `queued`, `delivered`, `expired`,
 *   `retried` (an attempt found the device still unreachable);
 * - `admission_total{class,outcome}` (outcome `admitted` or `refused`) — counter, and
 *   `admission_in_flight{class}` — gauge, of admission control (classes `grpc`, `device`, `node`, `watch`);
 * - `event_loop_delay_ms{quantile}` (`0.5`, `0.99`, `1` = max) — gauge: how late the node's event
 *   loop ran timers since the previous scrape (perf_hooks.monitorEventLoopDelay, 10 ms resolution);
 * - thick edge (docs/edge.md): on a cloud node replicating edge logs,
 *   `edge_replication_batches_total{edge,outcome}` (outcome `applied`, `duplicate`, `gap`,
 *   `conflict`, `malformed`, `forged`, `failed`) — counter, and `edge_replication_last_sync_seconds{edge}` —
 *   gauge; on a thick edge node, `edge_log_published_total` (batches into its log stream) — counter,
 *   and `edge_log_pending` (twins with events not yet in it) — gauge.
 */
import { createServer, type Server } from "node:http";
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import type { Attributes, Counter, Histogram, Meter } from "@opentelemetry/api";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import type { ClassStats, WorkClass } from "../core/admission.ts";
import { Unavailable } from "../core/errors.ts";
import { formatHostPort, parseHostPort } from "../core/host-port.ts";
import { type EdgeReplicationCounts, REPLICATION_OUTCOMES } from "../core/replication-counts.ts";
import { PlainHistogram } from "./plain-histogram.ts";

/** Hot-path counts, kept as plain numbers and read at scrape time (no per-turn attribute hashing). */
export interface HotCounts {
  activations: number;
  passivations: number;
  /** Twins this node quarantined (a forked or out-of-epoch log found on replay). */
  quarantines: number;
  /** Commits the store refused because another writer had appended first (the twin reloads). */
  conflicts: number;
  /** Message kind → turns that ended ok and that failed (one lookup per turn, no key built). */
  readonly turns: Map<string, TurnCounts>;
}

/** Turns of one message kind, by outcome. */
export interface TurnCounts {
  ok: number;
  failed: number;
}

/** The node's instruments. Recording is cheap and never throws. */
export interface DoppelMetrics {
  readonly persistDuration: Histogram;
  readonly persistedEvents: Counter;
  readonly rejectedInputs: Counter;
  readonly leaseRenewals: Counter;
  /** Calls refused for their credential (UNAUTHENTICATED) or their rights (PERMISSION_DENIED). */
  readonly authRefused: Counter;
  /** Calls refused by a principal's rate limit. */
  readonly rateLimited: Counter;
  /** Twin creations refused by their creator's quota (`quota` = `maxTwins`), counted by the twin's owner. */
  readonly quotaExceeded: Counter;
  readonly droppedReports: Counter;
}

/** Values read at scrape time. */
export interface GaugeSources {
  residentTwins(): number;
  mailboxDepth(): number;
  shardsOwned(): number;
  /** Admission control's counters of a class, when the node has admission control. */
  admission?(workClass: WorkClass): Readonly<ClassStats> | undefined;
  /** The device auth callout's counters, when the node runs it (`nats.deviceAuth`). */
  deviceAuth?(): Readonly<DeviceAuthCounts> | undefined;
  /** The edge's store-and-forward state, when the node is an edge node. */
  edge?(): Readonly<EdgeCounts> | undefined;
  /** The thick-edge replicator's counts per edge, when the node replicates edge logs. */
  replication?(): Readonly<Record<string, Readonly<EdgeReplicationCounts>>> | undefined;
  /** The thick edge's log publisher, when the node publishes its twins' log upstream. */
  edgeLog?(): Readonly<EdgeLogCounts> | undefined;
  /** The CoAP listener's counters and open observations, when the node serves CoAP. */
  coap?(): { readonly counts: Readonly<Record<string, number>>; readonly observers: number } | undefined;
  /** The HTTP device routes' counters, when the node serves HTTP. */
  httpDevices?(): Readonly<Record<string, number>> | undefined;
  /** Twins' commands to their devices, by outcome (see the module comment). */
  deviceCommands?(): Readonly<Record<string, number>> | undefined;
}

/** What an edge node's forwarder knows (the shape of its status, read at scrape time), and its telemetry path's counts. */
export interface EdgeCounts {
  readonly linkUp: boolean;
  readonly backlog: number;
  readonly backlogBytes: number;
  readonly dropped: number;
  readonly lastSyncAt: number | undefined;
  /** The telemetry path's counters by outcome (received, forwarded, windows, late, dropped, ...). */
  readonly telemetry?: Readonly<Record<string, number>>;
  /** The cloud's device revocations at this edge, by outcome (learnt, malformed, kicked). */
  readonly revocations?: Readonly<Record<string, number>>;
}

/** What a thick edge's log publisher counts (read at scrape time). */
export interface EdgeLogCounts {
  readonly published: number;
  readonly pending: number;
}

/** What the device auth callout counts (the shape of its stats, read at scrape time). */
export interface DeviceAuthCounts {
  allowed: number;
  refused: Readonly<Record<string, number>>;
  invalid: number;
  kicked: number;
}

const WORK_CLASSES: readonly WorkClass[] = ["grpc", "device", "node", "watch"];

/** The buckets of the duration histograms, ms. */
const MS_BUCKETS: readonly number[] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000];

function instruments(meter: Meter): DoppelMetrics {
  const ms = { unit: "ms", advice: { explicitBucketBoundaries: [...MS_BUCKETS] } };
  return {
    persistDuration: meter.createHistogram("doppel_persist_duration_ms", {
      description: "one group-commit store call",
      ...ms,
    }),
    persistedEvents: meter.createCounter("doppel_persisted_events_total", {
      description: "events persisted",
    }),
    rejectedInputs: meter.createCounter("doppel_rejected_inputs_total", {
      description: "inputs refused, by source and code",
    }),
    leaseRenewals: meter.createCounter("doppel_lease_renewals_total", {
      description: "shard lease renewals, by outcome",
    }),
    authRefused: meter.createCounter("doppel_auth_refused_total", {
      description: "calls refused as unauthenticated or not permitted, by source and code",
    }),
    rateLimited: meter.createCounter("doppel_rate_limited_total", {
      description: "calls refused by a principal's rate limit, by source and principal kind",
    }),
    quotaExceeded: meter.createCounter("doppel_quota_exceeded_total", {
      description:
        "twin creations refused by their creator's quota, by quota (maxTwins); counted by the twin's owner",
    }),
    droppedReports: meter.createCounter("doppel_dropped_reports_total", {
      description: "device reports acknowledged without applying, by reason (duplicate, stale)",
    }),
  };
}

/** Metrics of one node: instruments, gauges, and (when listening) the Prometheus endpoint. */
export class NodeMetrics {
  readonly metrics: DoppelMetrics;
  /** Counted on the hot path (turns, activations); exported as counters at scrape time. */
  readonly counts: HotCounts = {
    activations: 0,
    passivations: 0,
    quarantines: 0,
    conflicts: 0,
    turns: new Map(),
  };
  /**
   * `doppel_turn_duration_ms`: one value per turn, so kept as plain numbers (see
   * `plain-histogram.ts`) and read by the exporter at scrape time.
   */
  readonly turnDuration = new PlainHistogram({
    name: "doppel_turn_duration_ms",
    description: "handler time of a turn",
    unit: "ms",
    boundaries: MS_BUCKETS,
    scope: "doppel",
  });
  readonly #provider: MeterProvider;
  readonly #exporter: PrometheusExporter;
  #server: Server | undefined;
  #address: string | undefined;
  readonly #loopDelay: IntervalHistogram;

  constructor(nodeId: string, gauges: GaugeSources) {
    this.#exporter = new PrometheusExporter({
      preventServerStart: true,
      metricProducers: [this.turnDuration],
    });
    this.#provider = new MeterProvider({
      resource: resourceFromAttributes({ "service.name": "doppel", "service.instance.id": nodeId }),
      readers: [this.#exporter],
    });
    const meter = this.#provider.getMeter("doppel");
    this.metrics = instruments(meter);
    const gauge = (name: string, description: string, read: () => number) =>
      meter.createObservableGauge(name, { description }).addCallback((result) => result.observe(read()));
    gauge("doppel_resident_twins", "twins resident in memory", () => gauges.residentTwins());
    gauge("doppel_mailbox_depth", "messages waiting in all mailboxes", () => gauges.mailboxDepth());
    gauge("doppel_shards_owned", "shards this node owns", () => gauges.shardsOwned());
    this.#loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.#loopDelay.enable();
    const loopDelay = this.#loopDelay;
    meter
      .createObservableGauge("doppel_event_loop_delay_ms", {
        description: "event-loop delay since the previous scrape, by quantile (1 = max)",
        unit: "ms",
      })
      .addCallback((result) => {
        if (loopDelay.count === 0) return;
        result.observe(loopDelay.percentile(50) / 1e6, { quantile: "0.5" });
        result.observe(loopDelay.percentile(99) / 1e6, { quantile: "0.99" });
        result.observe(loopDelay.max / 1e6, { quantile: "1" });
        loopDelay.reset();
      });
    meter
      .createObservableCounter("doppel_admission_total", {
        description: "work admitted or refused by admission control, by class",
      })
      .addCallback((result) => {
        for (const workClass of WORK_CLASSES) {
          const stats = gauges.admission?.(workClass);
          if (!stats) continue;
          result.observe(stats.admitted, { class: workClass, outcome: "admitted" });
          result.observe(stats.refused, { class: workClass, outcome: "refused" });
        }
      });
    meter
      .createObservableGauge("doppel_admission_in_flight", {
        description: "work in flight under admission control, by class",
      })
      .addCallback((result) => {
        for (const workClass of WORK_CLASSES) {
          const stats = gauges.admission?.(workClass);
          if (stats) result.observe(stats.inFlight, { class: workClass });
        }
      });
    meter
      .createObservableCounter("doppel_device_auth_total", {
        description: "device connections checked by the auth callout, by outcome (refused by reason)",
      })
      .addCallback((result) => {
        const stats = gauges.deviceAuth?.();
        if (!stats) return;
        result.observe(stats.allowed, { outcome: "allowed" });
        for (const [reason, n] of Object.entries(stats.refused))
          result.observe(n, { outcome: "refused", reason });
        result.observe(stats.invalid, { outcome: "invalid" });
        result.observe(stats.kicked, { outcome: "kicked" });
      });
    const edge = () => gauges.edge?.();
    const edgeGauge = (name: string, description: string, read: (counts: Readonly<EdgeCounts>) => number) =>
      meter.createObservableGauge(name, { description }).addCallback((result) => {
        const counts = edge();
        if (counts) result.observe(read(counts));
      });
    edgeGauge("doppel_edge_link_up", "1 while the cloud's JetStream answers across the leaf link", (c) =>
      c.linkUp ? 1 : 0,
    );
    edgeGauge(
      "doppel_edge_backlog",
      "reports stored at the edge, not yet stored by the cloud",
      (c) => c.backlog,
    );
    edgeGauge("doppel_edge_backlog_bytes", "bytes the edge's buffer stream holds", (c) => c.backlogBytes);
    edgeGauge(
      "doppel_edge_last_sync_seconds",
      "when the cloud last confirmed the forwarded position (epoch s)",
      (c) => (c.lastSyncAt === undefined ? 0 : c.lastSyncAt / 1000),
    );
    meter
      .createObservableCounter("doppel_edge_dropped_total", {
        description: "reports the edge buffer dropped before they were forwarded (discard old, max age)",
      })
      .addCallback((result) => {
        const counts = edge();
        if (counts) result.observe(counts.dropped);
      });
    meter
      .createObservableCounter("doppel_edge_telemetry_total", {
        description:
          "the edge's raw telemetry messages by outcome (received, forwarded, windows, invalid, late, refolded, recorded, dropped before forwarded)",
      })
      .addCallback((result) => {
        for (const [outcome, count] of Object.entries(edge()?.telemetry ?? {}))
          result.observe(count, { outcome });
      });
    meter
      .createObservableCounter("doppel_edge_revocations_total", {
        description:
          "records of the cloud's device revocations the edge read, by outcome (learnt, malformed: skipped; kicked: devices disconnected)",
      })
      .addCallback((result) => {
        for (const [outcome, count] of Object.entries(edge()?.revocations ?? {}))
          result.observe(count, { outcome });
      });
    meter
      .createObservableCounter("doppel_edge_replication_batches_total", {
        description:
          "thick-edge log batches the replicator took, by edge and outcome (applied, duplicate, gap, conflict, malformed, failed)",
      })
      .addCallback((result) => {
        for (const [edge, counts] of Object.entries(gauges.replication?.() ?? {}))
          for (const outcome of REPLICATION_OUTCOMES) result.observe(counts[outcome], { edge, outcome });
      });
    meter
      .createObservableGauge("doppel_edge_replication_last_sync_seconds", {
        description: "when the replicator last took a batch of the edge that the cloud then held (epoch s)",
      })
      .addCallback((result) => {
        for (const [edge, counts] of Object.entries(gauges.replication?.() ?? {}))
          if (counts.lastSyncAt !== undefined) result.observe(counts.lastSyncAt / 1000, { edge });
      });
    meter
      .createObservableCounter("doppel_edge_log_published_total", {
        description: "batches of edge twins' events published into the thick edge's log stream",
      })
      .addCallback((result) => {
        const log = gauges.edgeLog?.();
        if (log) result.observe(log.published);
      });
    meter
      .createObservableGauge("doppel_edge_log_pending", {
        description: "edge twins with committed events not yet in the thick edge's log stream",
      })
      .addCallback((result) => {
        const log = gauges.edgeLog?.();
        if (log) result.observe(log.pending);
      });
    meter
      .createObservableCounter("doppel_coap_total", {
        description:
          "CoAP requests by outcome (stored, refused 4.xx of which unauthorized, unavailable 5.xx), datagrams screened out, notifications sent",
      })
      .addCallback((result) => {
        const coap = gauges.coap?.();
        if (!coap) return;
        for (const [outcome, count] of Object.entries(coap.counts)) result.observe(count, { outcome });
      });
    meter
      .createObservableCounter("doppel_http_devices_total", {
        description:
          "HTTP device requests by outcome (requests, stored, reads, refused 4xx of which unauthorized, unavailable 5xx)",
      })
      .addCallback((result) => {
        const counts = gauges.httpDevices?.();
        if (!counts) return;
        for (const [outcome, count] of Object.entries(counts)) result.observe(count, { outcome });
      });
    meter
      .createObservableCounter("doppel_device_commands_total", {
        description:
          "twins' commands to their devices by outcome (sent, answered, offline, timed_out, not_sent, failed; queued, delivered, expired, retried)",
      })
      .addCallback((result) => {
        const counts = gauges.deviceCommands?.();
        if (!counts) return;
        for (const [outcome, count] of Object.entries(counts)) result.observe(count, { outcome });
      });
    meter
      .createObservableGauge("doppel_coap_observers", {
        description: "open CoAP observations of desired state",
      })
      .addCallback((result) => {
        const coap = gauges.coap?.();
        if (coap) result.observe(coap.observers);
      });
    const counts = this.counts;
    meter
      .createObservableCounter("doppel_activations_total", { description: "twins activated" })
      .addCallback((result) => result.observe(counts.activations));
    meter
      .createObservableCounter("doppel_passivations_total", { description: "twins passivated" })
      .addCallback((result) => result.observe(counts.passivations));
    meter
      .createObservableCounter("doppel_quarantines_total", {
        description:
          "twins quarantined: a forked or out-of-epoch log found on replay (the last line of defence behind the store's fencing; should stay 0)",
      })
      .addCallback((result) => result.observe(counts.quarantines));
    meter
      .createObservableCounter("doppel_commit_conflicts_total", {
        description: "commits refused because another writer appended first (the twin reloads)",
      })
      .addCallback((result) => result.observe(counts.conflicts));
    meter
      .createObservableCounter("doppel_turns_total", {
        description: "turns run, by message kind and outcome",
      })
      .addCallback((result) => {
        for (const [kind, turns] of counts.turns) {
          result.observe(turns.ok, { kind, outcome: "ok" });
          result.observe(turns.failed, { kind, outcome: "failed" });
        }
      });
  }

  /** The `host:port` of the metrics endpoint, when it listens. */
  get address(): string | undefined {
    return this.#address;
  }

  /** Serves `/metrics` (Prometheus text) on `listen` (`host:port`). Fails with `Unavailable` if it cannot bind. */
  async listen(listen: string): Promise<string> {
    const { host, port } = parseHostPort(listen, "metrics listen address");
    const server = createServer((request, response) => {
      if (request.url?.split("?")[0] === "/metrics") {
        this.#exporter.getMetricsRequestHandler(request, response);
      } else {
        response.statusCode = 404;
        response.end("try /metrics\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error) =>
        reject(new Unavailable(`metrics cannot listen on ${listen}: ${error.message}`)),
      );
      server.listen(port, host, () => resolve());
    });
    const bound = server.address();
    this.#server = server;
    this.#address = formatHostPort(host, typeof bound === "object" && bound ? bound.port : port);
    return this.#address;
  }

  /** Stops the endpoint and the provider. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.#loopDelay.disable();
    await this.#provider.shutdown();
  }
}

/** Attributes helper: drops undefined values. */
export function attrs(values: Record<string, string | number | boolean | undefined>): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) out[key] = value;
  return out;
}
