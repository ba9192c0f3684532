/**
 * What an edge learns of the cloud's device revocations (devices/auth/cloud-revocation.ts, the
 * rule there). The edge keeps its own copy of the hub's `DOPPEL_REVOCATIONS`: a stream of the same
 * name in the edge's JetStream domain (same subjects, one message per device), filled by the edge
 * node from the cloud's revocation feed (revocation-feed.ts: `doppel.edge.<edge>.revocations`,
 * answered by a cloud node; the edge needs no right to the cloud's JetStream API). Every
 * `edge.tick` while the link is up it asks for what follows the last hub sequence it copied (the
 * `Doppel-Hub-Seq` header of its stream's last message), stores each message as it came (message
 * id `hub-<created>-<seq>`, `created` the hub stream's creation, also in `Doppel-Hub-Stream`) and
 * asks again while it is behind; after an outage it resumes there, so nothing revoked meanwhile is
 * missed. A hub stream deleted and made again (its last sequence below the edge's, or another
 * creation time) is copied again from its start, with a warning. The copy is the edge's persistent memory: an edge node started with
 * the link down reads it back before its auth callout answers anyone.
 *
 * The edge node follows its copy with an ordered consumer. Each record is validated
 * ({@link decodeRevocation}); a malformed one is counted (`stats.malformed`), logged and skipped.
 * Per device the latest revocation is kept; when one is learnt that refuses the device's
 * credential in the edge's own file, its connections to the leaf server are kicked
 * ({@link kickWith}: the auth callout's reader of that file and its disconnect).
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
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
import type { DeviceCredentials } from "../auth/device-credentials.ts";
import { revocationStreamConfig } from "../auth/revocation-publisher.ts";
import { isNoAnswer } from "./link-state.ts";
import { FEED_BATCH, parseFeedReply, revocationFeedSubject } from "./revocation-feed.ts";

/** The header carrying a copied message's sequence in the hub's stream. */
export const HUB_SEQ_HEADER = "Doppel-Hub-Seq";
/** The header carrying when the hub's stream a copied message came from was created. */
export const HUB_STREAM_HEADER = "Doppel-Hub-Stream";

/** Counters of what the edge learnt. */
export type EdgeRevocationStats = {
  /** Records that revoked a device later than anything known of it. */
  learnt: number;
  /** Records that did not read (counted, skipped). */
  malformed: number;
  /** Devices whose connections were kicked after a record refused their credential. */
  kicked: number;
  /** Messages copied from the cloud's stream into the edge's. */
  copied: number;
};

/** Creates the edge's copy of the hub's stream; an existing one is kept with what it holds. */
async function ensureCopy(jsm: JetStreamManager): Promise<void> {
  const existing = await jsm.streams.info(REVOCATIONS_STREAM).catch(() => undefined);
  if (existing) return;
  await jsm.streams.add(revocationStreamConfig());
}

/**
 * The hub sequence the edge's copy holds up to and the hub stream it came from (its last message's
 * headers; 0 when empty).
 */
async function copiedThrough(jsm: JetStreamManager): Promise<{ seq: number; hubStream: string | undefined }> {
  const last = (await jsm.streams.info(REVOCATIONS_STREAM)).state.last_seq;
  if (last === 0) return { seq: 0, hubStream: undefined };
  const message = await jsm.streams.getMessage(REVOCATIONS_STREAM, { seq: last }).catch(() => null);
  const seq = Number(message?.header?.get(HUB_SEQ_HEADER));
  const hubStream = message?.header?.get(HUB_STREAM_HEADER) || undefined;
  return { seq: Number.isSafeInteger(seq) && seq > 0 ? seq : 0, hubStream };
}

export class EdgeRevocations implements RevocationList {
  readonly stats: EdgeRevocationStats = { learnt: 0, malformed: 0, kicked: 0, copied: 0 };
  readonly #records = new Map<string, CloudRevocation>();
  readonly #logger: Logger;
  readonly #nc: NatsConnection;
  readonly #edge: string;
  #js: JetStreamClient | undefined;
  /** The last hub sequence copied into the edge's stream. */
  #through = 0;
  /** When the hub stream copied from was created (undefined: not known yet). */
  #hubStream: string | undefined;
  #copying: Promise<void> | undefined;
  #kick:
    | { readonly credentials: DeviceCredentials; readonly disconnect: (device: string) => Promise<number> }
    | undefined;
  #stopped = false;
  #stop: (() => Promise<void>) | undefined;

  private constructor(nc: NatsConnection, edge: string, logger: Logger) {
    this.#nc = nc;
    this.#edge = edge;
    this.#logger = logger;
  }

  /**
   * Ensures the edge's copy and reads it to its end before returning (so the callout refuses at
   * once), then keeps following it. Needs only the edge's own JetStream (the link may be down);
   * {@link copy} brings in what the cloud has.
   */
  static async start(options: {
    /** The edge node's connection to its leaf server (the devices' account). */
    readonly connection: NatsConnection;
    /** The edge's name (its feed subject). */
    readonly edge: string;
    readonly logger: Logger;
  }): Promise<EdgeRevocations> {
    const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(options.connection);
    await ensureCopy(jsm);
    const revocations = new EdgeRevocations(options.connection, options.edge, options.logger);
    revocations.#js = jetstream(options.connection);
    const copied = await copiedThrough(jsm);
    revocations.#through = copied.seq;
    revocations.#hubStream = copied.hubStream;
    const held = (await jsm.streams.info(REVOCATIONS_STREAM)).state.messages;
    const consumer = await revocations.#js.consumers.get(REVOCATIONS_STREAM, {
      deliver_policy: DeliverPolicy.All,
    });
    const messages = await consumer.consume({ max_messages: 256 });
    let caughtUp: () => void = () => undefined;
    let failed: (error: unknown) => void = () => undefined;
    const read = new Promise<void>((resolve, reject) => {
      caughtUp = resolve;
      failed = reject;
    });
    if (held === 0) caughtUp();
    // Settles `read` however the loop ends (a loop that fails before the end fails the start).
    const loop = (async () => {
      for await (const msg of messages) {
        await revocations.#take(msg);
        if (msg.info.pending === 0) caughtUp();
      }
    })()
      .catch((error: unknown) => {
        options.logger.warn({ err: error }, "edge: stopped following the cloud's revocations");
        failed(error);
      })
      .finally(() => caughtUp());
    revocations.#stop = async () => {
      await revocations.#copying;
      await messages.close();
      await loop;
    };
    try {
      await read;
    } catch (error) {
      await revocations.stop().catch(() => undefined);
      throw error;
    }
    return revocations;
  }

  /**
   * Copies what the cloud's stream holds beyond the edge's copy (one request per page, until a
   * short page). Never throws: with the link down, or the cloud not answering, it tries again at
   * the next call. One copy runs at a time; none once stopped.
   */
  copy(timeoutMs: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#copying ??= this.#copyAll(timeoutMs)
      .catch((error: unknown) => {
        if (!isNoAnswer(error))
          this.#logger.warn(
            { err: String((error as Error)?.message ?? error) },
            "edge: cannot copy the cloud's revocations yet",
          );
      })
      .finally(() => {
        this.#copying = undefined;
      });
    return this.#copying;
  }

  async #copyAll(timeoutMs: number): Promise<void> {
    const js = this.#js!;
    for (;;) {
      const after = this.#through;
      const reply = await this.#nc.request(
        revocationFeedSubject(this.#edge),
        new TextEncoder().encode(JSON.stringify({ after })),
        { timeout: timeoutMs },
      );
      const page = parseFeedReply(reply.data, after);
      if (page.last < after || (this.#hubStream !== undefined && page.created !== this.#hubStream)) {
        // The hub's stream was deleted (and made again): its sequences started over.
        this.#logger.warn(
          { after, last: page.last, copiedFrom: this.#hubStream, hubStream: page.created },
          "edge: the cloud's revocation stream was made again; copying it from its start",
        );
        this.#through = 0;
        this.#hubStream = page.created;
        continue;
      }
      this.#hubStream ??= page.created;
      const hubStream = page.created ?? "";
      for (const record of page.records) {
        const h = natsHeaders();
        h.set(HUB_SEQ_HEADER, String(record.seq));
        h.set(HUB_STREAM_HEADER, hubStream);
        // Subjects outside the copy's own are not stored (the cloud's stream takes only those).
        if (!/^doppel\.revocations\.[^.]+\.[^.]+$/.test(record.subject)) {
          this.stats.malformed++;
        } else {
          await js.publish(record.subject, new TextEncoder().encode(record.data), {
            headers: h,
            msgID: `hub-${hubStream}-${record.seq}`,
          });
          this.stats.copied++;
        }
        this.#through = record.seq;
      }
      if (page.records.length < FEED_BATCH) {
        // Everything up to the cloud's last sequence is copied (later ones were superseded).
        if (page.last > this.#through && page.records.length === 0) this.#through = page.last;
        if (page.records.length === 0 || this.#through >= page.last) return;
      }
    }
  }

  /**
   * Once the callout runs: kicks each device a record refuses the credential `credentials` (the
   * callout's reader of the edge's own file) shows it holds, by `disconnect`. Until then nothing is
   * kicked.
   */
  kickWith(credentials: DeviceCredentials, disconnect: (device: string) => Promise<number>): void {
    this.#kick = { credentials, disconnect };
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
    const kick = this.#kick;
    if (!kick) return 0;
    let createdAt: string | undefined;
    try {
      createdAt = kick.credentials.record(device)?.createdAt;
    } catch {
      return 0; // a corrupt file: the callout refuses everyone anyway
    }
    if (createdAt === undefined || !this.revokes(device, createdAt)) return 0;
    try {
      const kicked = await kick.disconnect(device);
      if (kicked > 0) this.stats.kicked++;
      return kicked;
    } catch (error) {
      this.#logger.warn({ err: error, device }, "edge: could not disconnect a device the cloud revoked");
      return 0;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#stop?.();
  }
}
