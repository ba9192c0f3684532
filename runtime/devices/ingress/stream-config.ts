/**
 * The JetStream stream that makes device input durable, and its per-shard consumers. Doppel
 * creates and configures both; operators only choose the settings below.
 *
 * Stream `DOPPEL_INGRESS` (name configurable):
 * - subjects `doppel.dev.*.*.reported` and `doppel.dev.*.*.telemetry` (sync, desired, cmd and
 *   errors are core NATS: they need no storage);
 * - a subject transform stores each message as `doppel.in.<shard>.<type>.<id>.<channel>`, where
 *   `<shard>` is `{{partition(S,1,2)}}` — FNV-1a of type+id mod S, which is exactly
 *   `shardOf(type, id, S)` (cluster/ring/shard.ts; checked against the real server by a test);
 * - `workqueue` retention: a message is removed once its shard's consumer acknowledged it, which
 *   Doppel does only after the twin's events are persisted. The stream therefore holds only input
 *   not yet persisted, and its limits bound that backlog:
 *   - `maxBytes` (default 1 GiB) and `discard: new`: when the backlog is full, new publishes are
 *     refused (the device's publish fails and it buffers or retries) instead of silently dropping
 *     older unprocessed reports;
 *   - `maxAge` (default 7 days): input no node processed within a week is dropped;
 *   - `maxMsgSize` (default 1 MiB, the server's usual max_payload): larger publishes are refused by
 *     the server. Messages that fit but exceed the node's `limits.maxPayloadBytes` (64 KiB) reach
 *     ingress and are rejected there: counted, and an error on the twin's `errors` subject;
 *   - `duplicateWindow` (default 2 minutes): a publish whose `Nats-Msg-Id` the stream saw within the
 *     window is acknowledged as a duplicate and not stored. Beyond the window, the twin itself
 *     drops a report whose message id is among its recent causations (`TwinData.recent`);
 *   - `replicas` (default 1; 3 on a NATS cluster), file storage.
 *
 * Consumers: one durable pull consumer per node, whose filter subjects are the shards the node
 * owns (`doppel.in.<n>.>` for each shard n; NATS 2.10+ `filter_subjects`), with explicit acks. A
 * workqueue stream refuses two consumers whose filters overlap, so a shard is consumed by exactly
 * one consumer at a time, and a message leaves the stream once acknowledged: the stream itself is
 * each shard's ingress position. A node that loses a shard takes it out of its filter; a node that
 * gains one replaces its consumer by a new one (delivering every message still in the stream for
 * its filter, in stream order) after taking the shard out of any other consumer's filter (a dead
 * node's, or the old per-shard `shard-<n>` consumers). JetStream's work therefore grows with the
 * number of nodes, not with the shard count. `maxAckPending` (default 1024 per node) bounds
 * unacknowledged messages (backpressure); `ackWait` (default 10 s) is when the server redelivers
 * a message its node neither acknowledged nor refused.
 */
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { FailedPrecondition, Unavailable } from "../../core/errors.ts";
import { DEVICE_PREFIX, DeviceChannel, deviceSubjects } from "../protocol.ts";

/** First two tokens of the subjects the stream stores messages under (after the transform). */
export const INGRESS_PREFIX = "doppel.in";

/** Stream settings (see the module comment for what each bounds). */
export interface IngressStreamSettings {
  readonly name: string;
  readonly replicas: number;
  readonly storage: "file" | "memory";
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxMsgSize: number;
  readonly duplicateWindowMs: number;
  /**
   * The twin types whose device input the stream takes (a thick edge's node: its edge twins; the
   * edge's forwarding streams take the other types). Absent: every type.
   */
  readonly types?: readonly string[];
  /**
   * Takes device reports only, not telemetry (a thick edge's node: the edge's raw telemetry stream
   * takes its twins' telemetry, and the edge node records it here and reduces it for the cloud).
   */
  readonly reportsOnly?: boolean;
}

/** The node consumer's settings. */
export interface IngressConsumerSettings {
  readonly maxAckPending: number;
  readonly ackWaitMs: number;
  /** How long a message waits for its twin (default `PROCESSING_DEADLINE_MS` of jetstream-ingress.ts, 60 s). */
  readonly processingDeadlineMs?: number;
}

export const DEFAULT_STREAM: IngressStreamSettings = {
  name: "DOPPEL_INGRESS",
  replicas: 1,
  storage: "file",
  maxAgeMs: 7 * 24 * 3_600_000,
  maxBytes: 1024 ** 3,
  maxMsgSize: 1024 * 1024,
  duplicateWindowMs: 2 * 60_000,
};

export const DEFAULT_CONSUMER: IngressConsumerSettings = { maxAckPending: 1024, ackWaitMs: 10_000 };

/** The subject transform's destination for `shards` shards. */
export function partitionDestination(shards: number): string {
  return `${INGRESS_PREFIX}.{{partition(${shards},1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}`;
}

/** The stream's configuration for `shards` shards. */
export function ingressStreamConfig(
  settings: IngressStreamSettings,
  shards: number,
): Partial<StreamConfig> & {
  name: string;
} {
  return {
    name: settings.name,
    subjects: [
      ...deviceSubjects(DeviceChannel.Reported, settings.types),
      ...(settings.reportsOnly ? [] : deviceSubjects(DeviceChannel.Telemetry, settings.types)),
    ],
    subject_transform: { src: `${DEVICE_PREFIX}.*.*.*`, dest: partitionDestination(shards) },
    retention: RetentionPolicy.Workqueue,
    storage: settings.storage === "memory" ? StorageType.Memory : StorageType.File,
    discard: DiscardPolicy.New,
    max_age: nanos(settings.maxAgeMs),
    max_bytes: settings.maxBytes,
    max_msg_size: settings.maxMsgSize,
    max_msgs: -1,
    duplicate_window: nanos(settings.duplicateWindowMs),
    num_replicas: settings.replicas,
  };
}

/** The filter subject of `shard`'s messages. */
export function shardFilter(shard: number): string {
  return `${INGRESS_PREFIX}.${shard}.>`;
}

/** The shard a consumer filter subject `doppel.in.<n>.>` selects, or undefined for any other filter. */
export function shardOfFilter(filter: string): number | undefined {
  const match = /^doppel\.in\.(\d+)\.>$/.exec(filter);
  return match ? Number(match[1]) : undefined;
}

/** A consumer's filter subjects, however its configuration gives them (one, several, none). */
export function filtersOf(info: { readonly config: Partial<ConsumerConfig> }): readonly string[] {
  const { filter_subjects: several, filter_subject: one } = info.config;
  return several ?? (one ? [one] : []);
}

/** The configuration of a node's consumer named `name`, consuming `shards`. */
export function nodeConsumerConfig(
  name: string,
  shards: readonly number[],
  settings: IngressConsumerSettings,
): Partial<ConsumerConfig> {
  return {
    durable_name: name,
    filter_subjects: shards.map(shardFilter),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    ack_wait: nanos(settings.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: settings.maxAckPending,
    // A crashed node's consumer goes away on its own once nobody pulls from it (its shards are
    // taken out of its filter by their new owners at once).
    inactive_threshold: nanos(NODE_CONSUMER_INACTIVE_MS),
  };
}

/** How long a node consumer nobody pulls from survives (a crashed node's). */
export const NODE_CONSUMER_INACTIVE_MS = 3_600_000;

/** Converts a stored subject (`doppel.in.<shard>.<type>.<id>.<channel>`) back to the device subject. */
export function deviceSubjectOfStored(stored: string): { subject: string; shard: number } {
  const tokens = stored.split(".");
  return { subject: `${DEVICE_PREFIX}.${tokens.slice(3).join(".")}`, shard: Number(tokens[2]) };
}

export function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && (error.code === 10059 || error.code === 10014);
}

/** A stream's info, or undefined when there is no such stream (other failures are thrown). */
export async function streamInfoIfAny(
  jsm: JetStreamManager,
  name: string,
): Promise<Awaited<ReturnType<JetStreamManager["streams"]["info"]>> | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/**
 * Creates the stream, or brings an existing one to `settings`. Refuses (`FailedPrecondition`)
 * a stream partitioned for another shard count (the shard count is fixed for a cluster's
 * lifetime) or with another retention. Fails with `Unavailable` if JetStream cannot be reached.
 */
export async function ensureIngressStream(
  jsm: JetStreamManager,
  settings: IngressStreamSettings,
  shards: number,
): Promise<void> {
  const wanted = ingressStreamConfig(settings, shards);
  try {
    const existing = await streamInfoIfAny(jsm, settings.name);
    if (!existing) {
      await jsm.streams.add(wanted);
      return;
    }
    const config = existing.config;
    if (config.subject_transform?.dest !== wanted.subject_transform?.dest) {
      throw new FailedPrecondition(
        `JetStream stream ${settings.name} stores device input as ${config.subject_transform?.dest ?? "(no transform)"}, ` +
          `but this node runs ${shards} shards (${wanted.subject_transform?.dest}). The shard count is fixed for a ` +
          `cluster's lifetime; to change it, drain and delete the stream (nats stream rm ${settings.name}).`,
      );
    }
    if (config.retention !== wanted.retention) {
      throw new FailedPrecondition(
        `JetStream stream ${settings.name} has retention ${config.retention}, not workqueue`,
      );
    }
    const differs =
      config.max_age !== wanted.max_age ||
      config.max_bytes !== wanted.max_bytes ||
      config.max_msg_size !== wanted.max_msg_size ||
      config.duplicate_window !== wanted.duplicate_window ||
      config.discard !== wanted.discard ||
      config.num_replicas !== wanted.num_replicas ||
      JSON.stringify([...(config.subjects ?? [])].sort()) !== JSON.stringify([...wanted.subjects!].sort());
    if (differs) await jsm.streams.update(settings.name, { ...config, ...wanted });
  } catch (error) {
    if (error instanceof FailedPrecondition) throw error;
    throw new Unavailable(
      `cannot set up JetStream stream ${settings.name}: ${error instanceof Error ? error.message : String(error)}`,
      undefined,
      { cause: error },
    );
  }
}
