/**
 * The cloud's side of revocation at the edges (cloud-revocation.ts): a cloud node that checks
 * device credentials keeps the hub's stream `DOPPEL_REVOCATIONS` equal to what its credentials
 * file says. Every device the file shows revoked, or provisioned again after a revocation
 * (`previousRevokedAt`), has one record there (`max_msgs_per_subject: 1`, limits retention, kept
 * for good); the edges copy it through the revocation feed (devices/edge/revocation-feed.ts).
 *
 * {@link RevocationPublisher.reconcile} runs on every poll of the revocation watch: it compares
 * the file with what it knows the stream holds (read from the stream at start, and again whenever
 * the stream was made anew: another creation time, or a publish that failed) and publishes the
 * records that differ. A publish that fails (the hub's JetStream unreachable, the stream deleted)
 * is tried again at the next poll, so a revocation in the file always reaches the stream; a revocation made while no
 * cloud node ran is published when one starts. Several cloud nodes publish the same records
 * (message id `<device>@<revokedAt>@<reprovisionedAt>`): the stream keeps one per device anyway.
 */
import {
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseRef } from "../../core/ids.ts";
import type { Logger } from "../../observability/logger.ts";
import { streamInfoIfAny } from "../ingress/stream-config.ts";
import {
  type CloudRevocation,
  decodeRevocation,
  encodeRevocation,
  REVOCATIONS_PREFIX,
  REVOCATIONS_STREAM,
  revocationSubject,
} from "./cloud-revocation.ts";
import type { DeviceCredentialRecord, DeviceCredentials } from "./device-credentials.ts";

/** Counters of the publisher. */
export interface RevocationPublisherStats {
  /** Records published into the hub's stream. */
  published: number;
  /** Publishes (or the stream's creation) that failed and wait for the next poll. */
  failed: number;
}

/** The record a device's entry in the credentials file calls for, if any. */
export function revocationOf(entry: DeviceCredentialRecord): CloudRevocation | undefined {
  if (entry.revokedAt !== undefined) return { device: entry.device, revokedAt: entry.revokedAt };
  if (entry.previousRevokedAt !== undefined)
    return { device: entry.device, revokedAt: entry.previousRevokedAt, reprovisionedAt: entry.createdAt };
  return undefined;
}

/** Creates the hub's revocation stream if it does not exist (an existing one is kept as it is). */
async function ensureRevocationStream(jsm: JetStreamManager, replicas: number): Promise<void> {
  const existing = await jsm.streams.info(REVOCATIONS_STREAM).catch(() => undefined);
  // Direct gets serve the edges' requests (devices/edge/revocation-feed.ts).
  if (existing && !existing.config.allow_direct)
    await jsm.streams.update(REVOCATIONS_STREAM, { ...existing.config, allow_direct: true });
  if (existing) return;
  await jsm.streams.add({ ...revocationStreamConfig(), allow_direct: true, num_replicas: replicas });
}

/**
 * The revocation stream, the hub's and each edge's copy of it: one record per device (the latest),
 * kept until replaced.
 */
export function revocationStreamConfig(): Partial<StreamConfig> & { name: string } {
  return {
    name: REVOCATIONS_STREAM,
    subjects: [`${REVOCATIONS_PREFIX}.*.*`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.Old,
  };
}

export class RevocationPublisher {
  readonly stats: RevocationPublisherStats = { published: 0, failed: 0 };
  readonly #nc: NatsConnection;
  readonly #credentials: DeviceCredentials;
  readonly #logger: Logger;
  readonly #replicas: number;
  /** What the stream holds per device, as published (JSON); undefined until read from the stream. */
  #inStream: Map<string, string> | undefined;
  /** When the stream `#inStream` was read from was created. */
  #created: string | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  #running: Promise<void> | undefined;

  constructor(options: {
    /** A connection of the devices' account on the cloud's servers (the node's own). */
    readonly connection: NatsConnection;
    readonly credentials: DeviceCredentials;
    readonly logger: Logger;
    /** Replicas of the hub's stream (the ingress stream's). */
    readonly replicas?: number;
  }) {
    this.#nc = options.connection;
    this.#credentials = options.credentials;
    this.#logger = options.logger;
    this.#replicas = options.replicas ?? 1;
  }

  /** Brings the stream to what the file says; never throws (a failure waits for the next call). */
  reconcile(): Promise<void> {
    this.#running ??= this.#reconcile()
      .catch((error: unknown) => {
        this.stats.failed++;
        // The stream may be gone or made anew: read it again before publishing.
        this.#inStream = undefined;
        this.#logger.warn({ err: error }, "device revocations: cannot publish to the cloud's stream yet");
      })
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  async #reconcile(): Promise<void> {
    const wanted = this.#credentials
      .list()
      .map(revocationOf)
      .filter((record) => record !== undefined);
    if (!this.#jsm || !this.#js) {
      const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
      this.#jsm = await jetstreamManager(this.#nc);
      this.#js = jetstream(this.#nc);
    }
    const js = this.#js;
    const current = this.#inStream && (await streamInfoIfAny(this.#jsm, REVOCATIONS_STREAM));
    if (!this.#inStream || !current || current.created !== this.#created) {
      // Created even with nothing in it: the feed then answers from it at once.
      await ensureRevocationStream(this.#jsm, this.#replicas);
      this.#created = (await this.#jsm.streams.info(REVOCATIONS_STREAM)).created;
      this.#inStream = await this.#read(js);
    }
    for (const record of wanted) {
      const body = JSON.stringify(record);
      if (this.#inStream.get(record.device) === body) continue;
      await js.publish(revocationSubject(parseRef(record.device)), encodeRevocation(record), {
        msgID: `${record.device}@${record.revokedAt}@${record.reprovisionedAt ?? ""}`,
      });
      this.#inStream.set(record.device, body);
      this.stats.published++;
      this.#logger.info(
        { device: record.device, revokedAt: record.revokedAt, reprovisionedAt: record.reprovisionedAt },
        "device revocations: published for the edges",
      );
    }
  }

  /** The records the stream holds now, by device (a record that does not read is left out). */
  async #read(js: JetStreamClient): Promise<Map<string, string>> {
    const held = new Map<string, string>();
    const consumer = await js.consumers.get(REVOCATIONS_STREAM, {
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    for (let done = false; !done; ) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 2000 });
      let taken = 0;
      for await (const msg of batch) {
        taken++;
        try {
          const record = decodeRevocation(msg.subject, msg.data);
          held.set(record.device, JSON.stringify(record));
        } catch {
          // Published again from the file if the file calls for a record of that device.
        }
        if (msg.info.pending === 0) done = true;
      }
      if (taken === 0) done = true;
    }
    await consumer.delete().catch(() => undefined);
    return held;
  }
}
