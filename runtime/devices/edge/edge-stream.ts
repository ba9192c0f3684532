/**
 * The edge's store-and-forward stream, and the source that forwards it to the cloud.
 *
 * An edge runs a nats-server that is a leaf node of the cloud's, with a JetStream domain of its
 * own (the edge's name). Devices publish reports and telemetry on the usual subjects to the edge;
 * the stream `DOPPEL_EDGE` in the edge's domain stores them, so the device's PubAck means
 * "durable at the edge". The cloud's ingress stream (`DOPPEL_INGRESS`, in the hub's domain) lists
 * the edge stream among its `sources` (`external.api` = `$JS.<edge>.API`), with the same subject
 * transform as its own, so forwarded messages are stored exactly as local ones
 * (`doppel.in.<shard>.<type>.<id>.<channel>`) and the cloud's shard consumers take them in order.
 * The source remembers the last edge sequence it stored, so after an outage it resumes there: no
 * loss, no duplicate; the twins' per-device `Doppel-Seq` stays the last line of defence.
 *
 * The hub sources through a durable consumer at the edge (nats-server 2.14+ durable sourcing,
 * `ack_policy: flow_control`, durable-source.ts, shared with the thick edge's log) rather than the ephemeral one it
 * would create itself: after an outage the hub hears that consumer's heartbeats as soon as the
 * link is back and resumes at once, where an ephemeral source waits out its 30 s create request
 * and a backoff (docs/edge.md, "Source resume after an outage").
 *
 * The edge stream keeps *limits* retention (a source cannot acknowledge; a work-queue origin loses
 * messages across a leaf outage, nats-server issues #3207, #4109). The edge node trims what the hub
 * reports as stored (`EdgeForwarder`), so the stream holds only the backlog, and its limits bound
 * the outage it survives: `maxBytes`, `maxAge`, and `discard` — `new` (default) refuses new reports
 * when the backlog is full (the device's publish fails: "maximum bytes exceeded", it buffers or
 * retries), `old` drops the oldest unforwarded reports (counted as dropped by the edge node).
 */
import {
  DiscardPolicy,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { FailedPrecondition } from "../../core/errors.ts";
import { streamInfoIfAny } from "../ingress/stream-config.ts";
import { DEVICE_PREFIX, DeviceChannel, deviceSubjects } from "../protocol.ts";
import { type DurableEdgeSource, durableSourceRegistered, registerDurableSource } from "./durable-source.ts";

/** The edge stream's settings. */
export interface EdgeStreamSettings {
  readonly name: string;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  readonly maxMsgSize: number;
  readonly duplicateWindowMs: number;
  /** When the backlog is full: refuse new reports (`new`) or drop the oldest (`old`). */
  readonly discard: "new" | "old";
  /**
   * The twin types whose reports the edge forwards: a thick edge forwards the types that do not
   * run at the edge (its node's ingress stream takes the others). Absent: every type.
   */
  readonly types?: readonly string[];
}

export const DEFAULT_EDGE_STREAM: EdgeStreamSettings = {
  name: "DOPPEL_EDGE",
  maxBytes: 1024 ** 3,
  maxAgeMs: 7 * 24 * 3_600_000,
  maxMsgSize: 1024 * 1024,
  duplicateWindowMs: 2 * 60_000,
  discard: "new",
};

/** The device subjects an edge stores and forwards (reports and telemetry). */
export const FORWARDED_SUBJECTS: readonly string[] = [
  `${DEVICE_PREFIX}.*.*.${DeviceChannel.Reported}`,
  `${DEVICE_PREFIX}.*.*.${DeviceChannel.Telemetry}`,
];

/**
 * Where the edge node publishes the telemetry it forwards (raw or reduced) into the edge stream:
 * `doppel.fwd.<type>.<id>.telemetry`. Devices publish telemetry to the raw stream instead.
 */
export const FORWARD_PREFIX = "doppel.fwd";

/**
 * Where a thick edge's node publishes its twins' committed batches into its log stream:
 * `doppel.edge-log.<edge>.<type>.<id>` (replication/replicated-batch.ts).
 */
export const EDGE_LOG_PREFIX = "doppel.edge-log";

/**
 * What the edge's streams take, which must come from the edge's own server only: device reports
 * and telemetry, the telemetry the edge node forwards, the thick edge's log. The leaf remote
 * neither exports them (they reach the cloud only through the sources) nor imports them (a publish
 * on them elsewhere, by a cloud client or another edge, must not land in this edge's streams).
 */
export const EDGE_LOCAL_SUBJECTS: readonly string[] = [
  ...FORWARDED_SUBJECTS,
  `${FORWARD_PREFIX}.>`,
  `${EDGE_LOG_PREFIX}.>`,
];

/** The subject the edge node forwards `ref`'s telemetry on. */
export function forwardSubject(ref: { readonly type: string; readonly id: string }): string {
  return `${FORWARD_PREFIX}.${ref.type}.${ref.id}.${DeviceChannel.Telemetry}`;
}

/** What the edge stream stores: device reports (of `types`, else all), and the telemetry the edge node forwards. */
export function edgeStreamSubjects(types?: readonly string[]): string[] {
  return [
    ...deviceSubjects(DeviceChannel.Reported, types),
    `${FORWARD_PREFIX}.*.*.${DeviceChannel.Telemetry}`,
  ];
}

/** What the raw telemetry stream stores: device telemetry (of `types`, else all) as it came. */
export function rawTelemetrySubjects(types?: readonly string[]): string[] {
  return deviceSubjects(DeviceChannel.Telemetry, types);
}

/** The raw telemetry stream's settings: kept at the edge for `maxAge`, the oldest dropped beyond `maxBytes`. */
export interface RawStreamSettings {
  readonly name: string;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  readonly maxMsgSize: number;
  readonly duplicateWindowMs: number;
  /** The twin types whose telemetry it takes (see {@link EdgeStreamSettings.types}). Absent: every type. */
  readonly types?: readonly string[];
}

export const DEFAULT_RAW_STREAM: Omit<RawStreamSettings, "maxMsgSize" | "duplicateWindowMs"> = {
  name: "DOPPEL_EDGE_RAW",
  maxBytes: 1024 ** 3,
  maxAgeMs: 24 * 3_600_000,
};

/** The limits of an edge-local stream (the edge stream, the raw telemetry stream). */
type LimitsStreamSettings = Pick<
  RawStreamSettings,
  "name" | "maxBytes" | "maxAgeMs" | "maxMsgSize" | "duplicateWindowMs"
>;

/** A file-stored stream with limits retention on `subjects`, discarding by `discard` when full. */
function limitsStreamConfig(
  settings: LimitsStreamSettings,
  subjects: readonly string[],
  discard: DiscardPolicy,
): Partial<StreamConfig> & { name: string } {
  return {
    name: settings.name,
    // No subjects (a thick edge whose every type runs at the edge): the stream's own name, as the
    // server would give it, so nothing a device publishes lands there.
    subjects: subjects.length > 0 ? [...subjects] : [settings.name],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard,
    max_age: nanos(settings.maxAgeMs),
    max_bytes: settings.maxBytes,
    max_msg_size: settings.maxMsgSize,
    max_msgs: -1,
    duplicate_window: nanos(settings.duplicateWindowMs),
    num_replicas: 1,
  };
}

/** Creates the stream `wanted` describes, or brings an existing one (limits retention) to it. */
async function ensureLimitsStream(
  jsm: JetStreamManager,
  wanted: Partial<StreamConfig> & { name: string },
): Promise<void> {
  const existing = await streamInfoIfAny(jsm, wanted.name);
  if (!existing) {
    await jsm.streams.add(wanted);
    return;
  }
  if (existing.config.retention !== RetentionPolicy.Limits) {
    throw new FailedPrecondition(
      `JetStream stream ${wanted.name} at the edge has retention ${existing.config.retention}, not limits`,
    );
  }
  const c = existing.config;
  if (
    c.max_age !== wanted.max_age ||
    c.max_bytes !== wanted.max_bytes ||
    c.max_msg_size !== wanted.max_msg_size ||
    c.discard !== wanted.discard ||
    c.duplicate_window !== wanted.duplicate_window ||
    !sameSubjects(c.subjects, wanted.subjects)
  ) {
    await jsm.streams.update(wanted.name, { ...c, ...wanted });
  }
}

function sameSubjects(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  return JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());
}

/** The edge stream's configuration. */
export function edgeStreamConfig(settings: EdgeStreamSettings): Partial<StreamConfig> & { name: string } {
  return limitsStreamConfig(
    settings,
    edgeStreamSubjects(settings.types),
    settings.discard === "old" ? DiscardPolicy.Old : DiscardPolicy.New,
  );
}

/** Creates the edge stream in the edge's own domain, or brings it to `settings`. */
export async function ensureEdgeStream(jsm: JetStreamManager, settings: EdgeStreamSettings): Promise<void> {
  await ensureLimitsStream(jsm, edgeStreamConfig(settings));
}

/** The raw telemetry stream's configuration (limits retention, the oldest dropped when full). */
export function rawStreamConfig(settings: RawStreamSettings): Partial<StreamConfig> & { name: string } {
  return limitsStreamConfig(settings, rawTelemetrySubjects(settings.types), DiscardPolicy.Old);
}

/** Creates the raw telemetry stream (after {@link ensureEdgeStream}, which gives up its telemetry subjects), or brings it to `settings`. */
export async function ensureRawStream(jsm: JetStreamManager, settings: RawStreamSettings): Promise<void> {
  await ensureLimitsStream(jsm, rawStreamConfig(settings));
}

/**
 * The subject transforms of an edge's source: reports and forwarded telemetry onto the shard
 * subjects of the ingress stream's own transform (`dest`, whose `{{wildcard(3)}}` is the channel).
 */
export function edgeSourceTransforms(dest: string): { src: string; dest: string }[] {
  if (!dest.includes("{{wildcard(3)}}"))
    throw new FailedPrecondition(`the cloud's ingress transform ${dest} does not keep the channel token`);
  return [
    {
      src: `${DEVICE_PREFIX}.*.*.${DeviceChannel.Reported}`,
      dest: dest.replace("{{wildcard(3)}}", DeviceChannel.Reported),
    },
    {
      src: `${FORWARD_PREFIX}.*.*.${DeviceChannel.Telemetry}`,
      dest: dest.replace("{{wildcard(3)}}", DeviceChannel.Telemetry),
    },
  ];
}

/** Where the edge stream's source consumer delivers: the hub's stream subscribes to it across the leaf link. */
export function edgeSourceDeliverSubject(edgeDomain: string): string {
  return `doppel.edge-source.${edgeDomain}`;
}

/**
 * The edge stream of `edgeDomain` as a durable source of the cloud's ingress stream, whose own
 * subject transform is `ingressDest` (see {@link edgeSourceTransforms}).
 */
export function thinEdgeSource(
  edgeDomain: string,
  edgeStream: string,
  ingressDest: string,
): DurableEdgeSource {
  return {
    edge: edgeDomain,
    stream: edgeStream,
    deliverSubject: edgeSourceDeliverSubject(edgeDomain),
    transforms: edgeSourceTransforms(ingressDest),
  };
}

/**
 * Whether the ingress stream's `config` sources the edge stream `edgeStream` of `edgeDomain` with
 * the current transforms and durable consumer.
 */
export function edgeSourceRegistered(
  config: StreamConfig,
  edgeDomain: string,
  edgeStream: string = DEFAULT_EDGE_STREAM.name,
): boolean {
  const dest = config.subject_transform?.dest;
  return dest !== undefined && durableSourceRegistered(config, thinEdgeSource(edgeDomain, edgeStream, dest));
}

/**
 * Adds the edge stream of `edgeDomain` to the sources of the cloud's ingress stream `ingress`
 * (through `hub`, a manager of the hub's domain), durably (durable-source.ts), with the ingress
 * stream's own subject transform, so forwarded messages land on the shard subjects. Does nothing
 * when the source is there already; a source registered otherwise (an older edge node's
 * ephemeral one, other transforms) is replaced. Fails with `FailedPrecondition` when the ingress
 * stream does not exist (no cloud node ran yet) or has no subject transform. The edge's source
 * consumer (`ensureDurableSourceConsumer` of {@link thinEdgeSource}) must exist first.
 */
export async function registerEdgeSource(
  hub: JetStreamManager,
  ingress: string,
  edgeDomain: string,
  edgeStream: string,
): Promise<void> {
  const info = await streamInfoIfAny(hub, ingress);
  if (!info)
    throw new FailedPrecondition(
      `the cloud has no JetStream stream ${ingress} yet: start a cloud node first`,
    );
  const transform = info.config.subject_transform;
  if (!transform) throw new FailedPrecondition(`the cloud's stream ${ingress} has no subject transform`);
  await registerDurableSource(hub, info.config, thinEdgeSource(edgeDomain, edgeStream, transform.dest));
}

/**
 * The twin types whose reports the node ingress stream `name` in the edge's own domain takes (a
 * thick edge's node's; `*` when it takes every type: a pure edge's node ran on this server), or
 * `undefined` when there is no such stream.
 */
export async function edgeIngressTypes(jsm: JetStreamManager, name: string): Promise<string[] | undefined> {
  const info = await streamInfoIfAny(jsm, name);
  if (!info) return undefined;
  const prefix = `${DEVICE_PREFIX}.`;
  const suffix = `.*.${DeviceChannel.Reported}`;
  return (info.config.subjects ?? [])
    .filter((subject) => subject.startsWith(prefix) && subject.endsWith(suffix))
    .map((subject) => subject.slice(prefix.length, -suffix.length));
}
