/**
 * How an edge reads the cloud's device revocations (devices/auth/cloud-revocation.ts) without any
 * right to the cloud's JetStream API (docs/edge.md: the hub's per-edge users carry none). The edge
 * node requests on `doppel.edge.<edge>.revocations` with `{ after }`, the last sequence of the
 * hub's `DOPPEL_REVOCATIONS` it has copied; a cloud node (queue group `doppel-revocation-feed`,
 * {@link RevocationFeed}) answers with the stream's messages after it, as they are (subject and
 * body, for the edge to validate), at most {@link FEED_BATCH} at a time, and the stream's last
 * sequence (`last`), so the edge asks again at once while it is behind, and when the stream was
 * created (`created`: a stream deleted and made again starts its sequences over).
 *
 * A feed answers at most {@link FEED_IN_FLIGHT} requests at once (each up to FEED_BATCH + 1
 * JetStream calls); beyond that it answers `UNAVAILABLE` at once (the edge asks again at its next
 * tick). A hub stream it cannot read is `UNAVAILABLE` too; only a missing stream is `last: 0`.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { DoppelError, InvalidArgument, Unavailable, type WireError } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import { REVOCATIONS_PREFIX, REVOCATIONS_STREAM } from "../auth/cloud-revocation.ts";
import { streamInfoIfAny } from "../ingress/stream-config.ts";
import { respondOrLog } from "./respond-or-log.ts";

/** What the cloud's feeds subscribe to: every edge's request subject. */
export const REVOCATION_FEED_SUBJECTS = "doppel.edge.*.revocations";
/** One cloud node answers each request. */
export const REVOCATION_FEED_QUEUE = "doppel-revocation-feed";
/** Most records in one answer (each at most 1 KiB as stored, see cloud-revocation.ts). */
export const FEED_BATCH = 64;
/** Most requests one feed answers at once (the rest are answered `UNAVAILABLE`). */
export const FEED_IN_FLIGHT = 8;

/** Where edge `edge` asks for the cloud's revocations. */
export function revocationFeedSubject(edge: string): string {
  return `doppel.edge.${edge}.revocations`;
}

/** One message of the hub's stream as the cloud passes it on. */
export interface FeedRecord {
  /** Its sequence in the hub's stream. */
  readonly seq: number;
  readonly subject: string;
  /** Its body, as stored (the edge decodes and validates it). */
  readonly data: string;
}

/** The cloud's answer (the edge has everything up to `last` once it holds a short page). */
export interface FeedPage {
  /** The messages after the request's `after`, in order. */
  readonly records: readonly FeedRecord[];
  /** The hub stream's last sequence (0: no stream, or nothing in it yet). */
  readonly last: number;
  /** When the hub's stream was created (absent: no stream); a new value means new sequences. */
  readonly created?: string;
}

type FeedReply = { ok: FeedPage } | { error: WireError };

const isSeq = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

/** The request's `after`; `InvalidArgument` for anything but `{ after: <integer ≥ 0> }`. */
export function parseFeedRequest(data: Uint8Array): number {
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new InvalidArgument("revocation feed request is not JSON");
  }
  const after = (body as { after?: unknown } | null)?.after;
  if (!isSeq(after)) throw new InvalidArgument("revocation feed request: after must be an integer ≥ 0");
  return after;
}

/**
 * The cloud's answer to a request for what follows `after`: the page, or the cloud's error
 * thrown as it came; `InvalidArgument` when the answer is not a page (records in order after
 * `after`, strings, at most {@link FEED_BATCH}).
 */
export function parseFeedReply(data: Uint8Array, after: number): FeedPage {
  let body: FeedReply;
  try {
    body = JSON.parse(new TextDecoder().decode(data)) as FeedReply;
  } catch {
    throw new InvalidArgument("revocation feed answer is not JSON");
  }
  if (body && typeof body === "object" && "error" in body) throw DoppelError.fromWire(body.error);
  const page = (body as { ok?: FeedPage } | null)?.ok;
  if (
    !page ||
    !Array.isArray(page.records) ||
    page.records.length > FEED_BATCH ||
    !isSeq(page.last) ||
    (page.created !== undefined && typeof page.created !== "string")
  )
    throw new InvalidArgument("revocation feed answer is not a page of records");
  let previous = after;
  for (const record of page.records) {
    if (
      !isSeq(record?.seq) ||
      record.seq <= previous ||
      record.seq > page.last ||
      typeof record.subject !== "string" ||
      typeof record.data !== "string"
    )
      throw new InvalidArgument("revocation feed answer: records out of order or malformed");
    previous = record.seq;
  }
  return {
    records: page.records.map(({ seq, subject, data }) => ({ seq, subject, data })),
    last: page.last,
    ...(page.created !== undefined ? { created: page.created } : {}),
  };
}

/** The cloud's side: answers every edge's requests from the hub's stream. */
export class RevocationFeed {
  readonly #nc: NatsConnection;
  readonly #logger: Logger;
  #jsm: JetStreamManager | undefined;
  #sub: Subscription | undefined;
  readonly #pending = new Set<Promise<void>>();

  constructor(nc: NatsConnection, logger: Logger) {
    this.#nc = nc;
    this.#logger = logger;
  }

  async start(): Promise<void> {
    const { jetstreamManager } = await import("@nats-io/jetstream");
    this.#jsm = await jetstreamManager(this.#nc);
    this.#sub = this.#nc.subscribe(REVOCATION_FEED_SUBJECTS, {
      queue: REVOCATION_FEED_QUEUE,
      callback: (error, message) => {
        if (error) {
          this.#logger.warn({ err: error }, "revocation feed: a request could not be received");
          return;
        }
        if (this.#pending.size >= FEED_IN_FLIGHT) {
          const busy = new Unavailable(
            `revocation feed: ${FEED_IN_FLIGHT} requests in flight, ask again later`,
          );
          this.#respond(message, { error: busy.toWire() });
          return;
        }
        const job = this.#answer(message);
        this.#pending.add(job);
        void job.finally(() => this.#pending.delete(job));
      },
    });
  }

  /** Answers one request; never rejects (a failed answer is logged, the edge asks again). */
  async #answer(message: Msg): Promise<void> {
    let reply: FeedReply;
    try {
      reply = { ok: await this.page(parseFeedRequest(message.data)) };
    } catch (error) {
      reply = { error: DoppelError.from(error).toWire() };
    }
    this.#respond(message, reply);
  }

  #respond(message: Msg, reply: FeedReply): void {
    respondOrLog(message, reply, this.#logger, "revocation feed");
  }

  /** How many requests the feed is answering now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** The hub stream's messages after `after` (at most {@link FEED_BATCH}) and its last sequence. */
  async page(after: number): Promise<FeedPage> {
    const jsm = this.#jsm!;
    let info: Awaited<ReturnType<typeof streamInfoIfAny>>;
    try {
      info = await streamInfoIfAny(jsm, REVOCATIONS_STREAM);
    } catch (error) {
      throw new Unavailable(`revocation feed: cannot read the hub's stream: ${(error as Error).message}`);
    }
    if (!info) return { records: [], last: 0 };
    const last = info.state.last_seq;
    const records: FeedRecord[] = [];
    const decoder = new TextDecoder();
    for (let next = after + 1; next <= last && records.length < FEED_BATCH; ) {
      const message = await jsm.direct.getMessage(REVOCATIONS_STREAM, {
        seq: next,
        next_by_subj: `${REVOCATIONS_PREFIX}.>`,
      });
      if (!message || message.seq > last) break;
      records.push({ seq: message.seq, subject: message.subject, data: decoder.decode(message.data) });
      next = message.seq + 1;
    }
    return { records, last, created: info.created };
  }

  async stop(): Promise<void> {
    this.#sub?.unsubscribe();
    await Promise.allSettled([...this.#pending]);
  }
}
