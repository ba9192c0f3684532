/**
 * Durable sourcing of an edge stream into a cloud stream (nats-server 2.14+, ADR-60), shared by
 * the thin edge (its `DOPPEL_EDGE` into the cloud's `DOPPEL_INGRESS`, edge-stream.ts) and the thick
 * edge (its `DOPPEL_EDGE_LOG` into the cloud's `DOPPEL_EDGE_LOGS`, replication/edge-log.ts).
 *
 * The edge creates a durable push consumer on its stream in its own domain (`ack_policy:
 * flow_control`, heartbeat 1 s, from the stream's first message) and names it in the cloud
 * stream's source (`consumer: { name, deliver_subject }`). For such a source the hub only sends a
 * *reset* request across the leaf link and, when one timed out, listens on the deliver subject: the
 * consumer's first heartbeat after an outage makes it retry at once. An ephemeral source (one the
 * hub creates itself) may resume 30 s plus a backoff late instead (docs/edge.md, "Source resume
 * after an outage").
 */
import { AckPolicy, type JetStreamManager, type StreamConfig, type StreamSource } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";

/** The durable consumer at the edge through which the hub sources an edge stream. */
export const EDGE_SOURCE_CONSUMER = "DOPPEL_CLOUD_SOURCE";

/** The JetStream API prefix of a domain (`$JS.<domain>.API`). */
export function domainApi(domain: string): string {
  return `$JS.${domain}.API`;
}

/** A subject transform of a source (the part of nats.js's type the sources here use). */
export interface SourceTransform {
  readonly src: string;
  readonly dest: string;
}

/** One edge stream, sourced durably by a cloud stream. */
export interface DurableEdgeSource {
  /** The edge's name: its JetStream domain. */
  readonly edge: string;
  /** The stream at the edge that the hub sources. */
  readonly stream: string;
  /** Where the edge's durable consumer delivers (unique per edge and stream). */
  readonly deliverSubject: string;
  /** The source's subject transforms (the thin edge's shard subjects), if any. */
  readonly transforms?: readonly SourceTransform[];
}

/** Whether `source` (a source of a cloud stream) is the edge stream of `edge`. */
export function isEdgeSource(source: StreamSource, edge: string): boolean {
  return source.external?.api === domainApi(edge);
}

/** The edge a source of a cloud stream forwards, if it is an edge's (`$JS.<edge>.API`). */
export function edgeOfSource(source: {
  readonly external?: { readonly api: string } | undefined;
}): string | undefined {
  const api = source.external?.api;
  const match = api ? /^\$JS\.([^.]+)\.API$/.exec(api) : null;
  return match?.[1];
}

/**
 * Creates, in the edge's own domain (`jsm`), the durable consumer the hub sources `source.stream`
 * through; an existing one is kept with its position.
 */
export async function ensureDurableSourceConsumer(
  jsm: JetStreamManager,
  source: DurableEdgeSource,
): Promise<void> {
  const existing = await jsm.consumers.info(source.stream, EDGE_SOURCE_CONSUMER).catch(() => undefined);
  if (existing) return;
  await jsm.consumers.add(source.stream, {
    durable_name: EDGE_SOURCE_CONSUMER,
    ack_policy: AckPolicy.FlowControl,
    deliver_subject: source.deliverSubject,
    flow_control: true,
    idle_heartbeat: nanos(1000),
  });
}

/** The cloud stream's source entry for `source`. */
export function durableStreamSource(source: DurableEdgeSource): StreamSource {
  return {
    name: source.stream,
    external: { api: domainApi(source.edge), deliver: "" },
    ...(source.transforms ? { subject_transforms: source.transforms.map((t) => ({ ...t })) } : {}),
    consumer: { name: EDGE_SOURCE_CONSUMER, deliver_subject: source.deliverSubject },
  };
}

/** Whether the cloud stream's `config` sources `source` as {@link durableStreamSource} describes it. */
export function durableSourceRegistered(config: StreamConfig, source: DurableEdgeSource): boolean {
  const have = (config.sources ?? []).find((s) => isEdgeSource(s, source.edge));
  if (!have || have.name !== source.stream) return false;
  if (have.consumer?.name !== EDGE_SOURCE_CONSUMER || have.consumer.deliver_subject !== source.deliverSubject)
    return false;
  const transforms = (have.subject_transforms ?? []).map((t) => ({ src: t.src, dest: t.dest }));
  return JSON.stringify(transforms) === JSON.stringify(source.transforms ?? []);
}

/**
 * Brings the cloud stream `config` (read through `hub`, a manager of the hub's domain) to source
 * `source` durably: any other source of the same edge (an older edge node's ephemeral one, other
 * transforms) is replaced. Returns whether it changed the stream. The edge's consumer
 * ({@link ensureDurableSourceConsumer}) must exist first. A replaced ephemeral source hands over to
 * a consumer that starts at the edge stream's first message: what the old one forwarded and the
 * edge still holds is sent again, for the cloud's idempotence (message ids, the twins' `Doppel-Seq`,
 * the replicator's twin+seq check) to drop.
 */
export async function registerDurableSource(
  hub: JetStreamManager,
  config: StreamConfig,
  source: DurableEdgeSource,
): Promise<boolean> {
  if (durableSourceRegistered(config, source)) return false;
  const others = (config.sources ?? []).filter((s) => !isEdgeSource(s, source.edge));
  await hub.streams.update(config.name, { ...config, sources: [...others, durableStreamSource(source)] });
  return true;
}
