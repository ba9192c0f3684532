/**
 * What an edge learns of the cloud's device revocations (devices/auth/cloud-revocation.ts, the
 * rule there). The edge node creates, in the edge's own JetStream domain, a mirror of the hub's
 * `DOPPEL_REVOCATIONS` (same name, `mirror.external.api = $JS.<hub domain>.API`): nats-server
 * copies every record across the leaf link while it is up and catches up from where it stopped
 * after an outage. The mirror is the edge's persistent memory: an edge node started with the link
 * down reads it back before its auth callout answers anyone, so a device the cloud revoked stays
 * refused.
 *
 * The edge node follows its local mirror with an ordered consumer. Each record is validated
 * ({@link decodeRevocation}); a malformed one is counted (`stats.malformed`), logged and skipped.
 * Per device the latest revocation is kept; when one is learnt that refuses the device's
 * credential in the edge's own file, its connections to the leaf server are kicked
 * (`onRevoked`, the auth callout's disconnect).
 */
import {
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  type JsMsg,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../observability/logger.ts";
import {
  type CloudRevocation,
  decodeRevocation,
  laterRevocation,
  REVOCATIONS_STREAM,
  type RevocationList,
  revokesCredential,
} from "../auth/cloud-revocation.ts";
import { domainApi } from "./durable-source.ts";

/** Counters of what the edge learnt. */
export type EdgeRevocationStats = {
  /** Records that revoked a device later than anything known of it. */
  learnt: number;
  /** Records that did not read (counted, skipped). */
  malformed: number;
  /** Devices whose connections were kicked after a record refused their credential. */
  kicked: number;
};

/** Creates the edge's mirror of the hub's stream; an existing one is kept with what it holds. */
async function ensureMirror(jsm: JetStreamManager, hubDomain: string): Promise<void> {
  const existing = await jsm.streams.info(REVOCATIONS_STREAM).catch(() => undefined);
  if (existing) return;
  await jsm.streams.add({
    name: REVOCATIONS_STREAM,
    mirror: { name: REVOCATIONS_STREAM, external: { api: domainApi(hubDomain), deliver: "" } },
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.Old,
  });
}

export class EdgeRevocations implements RevocationList {
  readonly stats: EdgeRevocationStats = { learnt: 0, malformed: 0, kicked: 0 };
  readonly #records = new Map<string, CloudRevocation>();
  readonly #logger: Logger;
  readonly #createdAt: (device: string) => string | undefined;
  #onRevoked: ((device: string) => Promise<number>) | undefined;
  #stop: (() => Promise<void>) | undefined;

  private constructor(logger: Logger, createdAt: (device: string) => string | undefined) {
    this.#logger = logger;
    this.#createdAt = createdAt;
  }

  /**
   * Ensures the mirror and reads it to its end before returning (so the callout refuses at once),
   * then keeps following it. Needs only the edge's own JetStream (the link may be down).
   */
  static async start(options: {
    /** The edge node's connection to its leaf server (the devices' account). */
    readonly connection: NatsConnection;
    readonly hubDomain: string;
    readonly logger: Logger;
    /** When the edge's own file created `device`'s credential (undefined: it has none). */
    readonly credentialCreatedAt: (device: string) => string | undefined;
  }): Promise<EdgeRevocations> {
    const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(options.connection);
    await ensureMirror(jsm, options.hubDomain);
    const revocations = new EdgeRevocations(options.logger, options.credentialCreatedAt);
    const held = (await jsm.streams.info(REVOCATIONS_STREAM)).state.messages;
    const consumer = await jetstream(options.connection).consumers.get(REVOCATIONS_STREAM, {
      deliver_policy: DeliverPolicy.All,
    });
    const messages = await consumer.consume({ max_messages: 256 });
    let caughtUp: () => void = () => undefined;
    const read = new Promise<void>((resolve) => {
      caughtUp = resolve;
    });
    if (held === 0) caughtUp();
    const loop = (async () => {
      for await (const msg of messages) {
        await revocations.#take(msg);
        if (msg.info.pending === 0) caughtUp();
      }
    })().catch((error: unknown) =>
      options.logger.warn({ err: error }, "edge: stopped following the cloud's revocations"),
    );
    revocations.#stop = async () => {
      await messages.close();
      await loop;
    };
    await read;
    return revocations;
  }

  /** Kicks a device a later record refuses; until set (the callout is starting), nothing is kicked. */
  set onRevoked(disconnect: (device: string) => Promise<number>) {
    this.#onRevoked = disconnect;
  }

  revokes(device: string, createdAt: string): boolean {
    const record = this.#records.get(device);
    return record !== undefined && revokesCredential(record, createdAt);
  }

  /** The latest record of `device` the edge knows, if any. */
  record(device: string): CloudRevocation | undefined {
    return this.#records.get(device);
  }

  /** How many devices the edge knows revoked in the cloud. */
  get size(): number {
    return this.#records.size;
  }

  /**
   * Kicks every device whose edge credential a known record refuses (at start: a device may still
   * be connected since before the edge node's restart). Returns how many connections it kicked.
   */
  async kickRevoked(): Promise<number> {
    let kicked = 0;
    for (const device of this.#records.keys()) kicked += await this.#kickIfRefused(device);
    return kicked;
  }

  async #take(msg: JsMsg): Promise<void> {
    let record: CloudRevocation;
    try {
      record = decodeRevocation(msg.subject, msg.data);
    } catch (error) {
      this.stats.malformed++;
      this.#logger.warn(
        { subject: msg.subject, seq: msg.seq, err: String(error) },
        "edge: skipped a malformed revocation record",
      );
      return;
    }
    const known = this.#records.get(record.device);
    const latest = laterRevocation(known, record);
    this.#records.set(record.device, latest);
    if (known && latest.revokedAt === known.revokedAt) return;
    this.stats.learnt++;
    this.#logger.info(
      { device: record.device, revokedAt: record.revokedAt, reprovisionedAt: record.reprovisionedAt },
      "edge: the cloud revoked a device",
    );
    await this.#kickIfRefused(record.device);
  }

  async #kickIfRefused(device: string): Promise<number> {
    const disconnect = this.#onRevoked;
    const createdAt = this.#createdAt(device);
    if (!disconnect || createdAt === undefined || !this.revokes(device, createdAt)) return 0;
    try {
      const kicked = await disconnect(device);
      if (kicked > 0) this.stats.kicked++;
      return kicked;
    } catch (error) {
      this.#logger.warn({ err: error, device }, "edge: could not disconnect a device the cloud revoked");
      return 0;
    }
  }

  async stop(): Promise<void> {
    await this.#stop?.();
  }
}
