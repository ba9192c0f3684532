/**
 * Durable device ingress: consumes the `DOPPEL_INGRESS` stream (see `stream-config.ts`) shard by
 * shard, runs each message through {@link DeviceIngress.process}, and settles it with JetStream
 * only after its effects are persisted:
 *
 * - persisted (or dropped by the twin as a duplicate) → `ack` (the stream forgets it);
 * - refused as invalid (bad subject, payload, id, schema, unknown type) → `term` (never redelivered),
 *   counted, and an error on the twin's `errors` subject when the subject names a valid twin;
 * - failed for a reason that may pass (store unavailable, deadline, mailbox full) → `nak` with a
 *   growing delay (1 s, 2 s, 4 s ... 30 s), redelivered until it succeeds; refused by admission
 *   control (the node is overloaded) → `nak` with a delay of at most 5 s, and a throttle error on
 *   the twin's `errors` subject.
 *
 * A node that dies before persisting never acks: after `ackWait` the server redelivers to
 * whichever node owns the shard then. A report that was persisted but not acknowledged — its node
 * died or was paused before the ack, or gave up waiting on a write that then succeeded and nak'ed
 * it — comes back as a redelivery, possibly much later (`ackWait`, nak delays up to 30 s), and
 * must not make a second event. Three checks drop it (and ack it), by the report's causation (its
 * `Nats-Msg-Id`, else `seq:<stream sequence>`):
 * - the twin's own memory of its 16 most recent causations (close redeliveries; at most
 *   `maxInFlightPerTwin`, default 8, messages of one twin are in flight at once, later ones wait
 *   in order, so concurrent copies always meet there);
 * - the stream sequences this node persisted itself (bounded), for a lost ack of its own;
 * - for a redelivered report (any node, any delay), its twin's log since the report was stored
 *   (`twins.history`): a twin that applied 16 newer reports meanwhile no longer remembers it.
 *
 * Order: messages of one shard arrive in stream order and messages of one twin enter its mailbox
 * in that order. A message that is retried (nak) can be overtaken by a later one of the same twin.
 *
 * Ownership: {@link ownShards} binds to the shards' durable consumers and starts consuming;
 * {@link releaseShards} stops pulling, naks what was delivered but not started (so the next owner
 * gets it at once) and waits for what is in flight to be persisted and acked. The cluster drives
 * these two as leases move; a single node owns every shard. A release may come while the same
 * shard's consumer is still being set up (a shard gained and handed on within milliseconds, as
 * when nodes start together or rejoin after a Redis restart): the shard counts as consumed from
 * the moment `ownShards` is called, and the release waits for the set-up to end and then closes it,
 * so no consumer outlives its release. A message is processed only while this node owns its shard
 * (`owns`, the lease's local deadline): otherwise it is nak'ed unprocessed for the owner.
 */
import {
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { fromNatsHeaders, type NatsTransport } from "../../../cluster/transport/nats.ts";
import { retryabilityOf } from "../../core/errors.ts";
import type { TwinRef } from "../../core/ids.ts";
import { present } from "../../core/present.ts";
import type { TwinApi } from "../../core/twin-api.ts";
import type { Logger } from "../../observability/logger.ts";
import { DeviceChannel, parseDeviceSubject } from "../protocol.ts";
import type { DeviceIngress } from "./device-ingress.ts";
import {
  DEFAULT_CONSUMER,
  DEFAULT_STREAM,
  deviceSubjectOfStored,
  ensureIngressStream,
  ensureShardConsumer,
  type IngressConsumerSettings,
  type IngressStreamSettings,
  shardConsumerName,
} from "./stream-config.ts";

export interface JetStreamIngressOptions {
  readonly stream?: IngressStreamSettings;
  readonly consumer?: IngressConsumerSettings;
  /** Most messages of one twin in flight at once (below the twin's 16 remembered causations). */
  readonly maxInFlightPerTwin?: number;
  /** How many stream sequences this node remembers as persisted (lost-ack protection). */
  readonly rememberPersisted?: number;
  /**
   * Where a redelivered report is looked for before it is applied (the twins' logs, from any
   * node); without it only the twin's and this node's memories drop redelivered duplicates.
   */
  readonly twins?: Pick<TwinApi, "history">;
  /**
   * Whether this node may process `shard` now (a cluster member: it holds the shard's lease,
   * checked against the lease's local deadline). A message of a shard it does not own is nak'ed
   * at once, unprocessed, for the shard's owner: e.g. deliveries read from the socket when a
   * paused process resumes, before its timers have told it that its leases expired — the server
   * has redelivered those to the new owner meanwhile. Default: every shard.
   */
  readonly owns?: (shard: number) => boolean;
}

/**
 * How far before a report was stored its event may carry a time (`at` is the clock of the node
 * that ran the turn, the stored time the NATS server's): their clocks may differ by this much.
 */
export const REDELIVERY_CLOCK_SKEW_MS = 60_000;

/**
 * Whether the report `messageId` of the twin on device subject `subject`, stored in the stream at
 * `storedAt`, is in the twin's log already. False for anything that is not a valid report subject
 * (the normal processing refuses or applies it). Rejects when the log cannot be read.
 */
export async function reportInLog(
  twins: Pick<TwinApi, "history">,
  subject: string,
  messageId: string,
  storedAt: number,
): Promise<boolean> {
  let ref: TwinRef;
  try {
    const parsed = parseDeviceSubject(subject);
    if (parsed.channel !== DeviceChannel.Reported) return false;
    ref = parsed.ref;
  } catch {
    return false;
  }
  const page = 1000;
  const since = Math.max(0, storedAt - REDELIVERY_CLOCK_SKEW_MS);
  for (let fromVersion: number | undefined; ; ) {
    const events = await twins.history(ref, {
      since,
      limit: page,
      ...present({ fromVersion }),
    });
    if (events.some((event) => event.causation === messageId)) return true;
    if (events.length < page) return false;
    fromVersion = events[events.length - 1]!.seq + 1;
  }
}

/** Counters of the durable ingress (exposed as metrics). */
export interface JetStreamIngressStats {
  delivered: number;
  redelivered: number;
  acked: number;
  /**
   * Acked without processing: a redelivered report already applied (this node persisted that
   * stream sequence itself, or the report is in its twin's log).
   */
  alreadyPersisted: number;
  terminated: number;
  retried: number;
  /** Nak'ed unprocessed: this node did not own the message's shard (any more) when it came to it. */
  notOwned: number;
  inFlight: number;
}

interface ShardConsumer {
  readonly shard: number;
  messages: ConsumerMessages | undefined;
  /** The consumer's set-up while it runs (a release waits for it, then closes what it opened). */
  setup: Promise<void> | undefined;
  closing: boolean;
  /** Messages in flight per twin key, and those waiting behind them (in order). */
  readonly active: Map<string, number>;
  readonly waiting: Map<string, JsMsg[]>;
  readonly inflight: Set<Promise<void>>;
}

const MAX_NAK_DELAY_MS = 30_000;
/** Longest nak delay of a message refused by admission control (1 s, 2 s, 4 s, 5 s, 5 s ...). */
const MAX_THROTTLE_DELAY_MS = 5_000;

/** Nak delay for the `deliveryCount`-th delivery: 1 s, 2 s, 4 s ... up to 30 s. */
export function retryDelay(deliveryCount: number): number {
  return Math.min(MAX_NAK_DELAY_MS, 1000 * 2 ** Math.max(0, Math.min(15, deliveryCount - 1)));
}

/** A FIFO-evicting set (`<stream sequence>/<message id>` of messages this node persisted). */
class RecentSet {
  readonly #set = new Set<string>();
  constructor(private readonly max: number) {}
  has(n: string): boolean {
    return this.#set.has(n);
  }
  add(n: string): void {
    this.#set.add(n);
    if (this.#set.size > this.max) {
      const oldest = this.#set.values().next().value;
      if (oldest !== undefined) this.#set.delete(oldest);
    }
  }
}

export class JetStreamIngress {
  readonly stats: JetStreamIngressStats = {
    delivered: 0,
    redelivered: 0,
    acked: 0,
    alreadyPersisted: 0,
    terminated: 0,
    retried: 0,
    notOwned: 0,
    inFlight: 0,
  };
  readonly stream: IngressStreamSettings;
  readonly consumer: IngressConsumerSettings;
  readonly #perTwin: number;
  readonly #persisted: RecentSet;
  readonly #twins: Pick<TwinApi, "history"> | undefined;
  readonly #owns: (shard: number) => boolean;
  readonly #shards = new Map<number, ShardConsumer>();
  #jsm: JetStreamManager | undefined;
  #stopped = false;

  constructor(
    private readonly nats: NatsTransport,
    private readonly ingress: DeviceIngress,
    /** The cluster's shard count S (the stream partitions by it). */
    readonly shardCount: number,
    private readonly logger: Logger,
    options: JetStreamIngressOptions = {},
  ) {
    this.stream = options.stream ?? DEFAULT_STREAM;
    this.consumer = options.consumer ?? DEFAULT_CONSUMER;
    this.#perTwin = options.maxInFlightPerTwin ?? 8;
    this.#persisted = new RecentSet(options.rememberPersisted ?? 65_536);
    this.#twins = options.twins;
    this.#owns = options.owns ?? (() => true);
  }

  /** Creates or checks the stream. Call once before {@link ownShards}. */
  async start(): Promise<void> {
    this.#jsm = await jetstreamManager(this.nats.connection);
    await ensureIngressStream(this.#jsm, this.stream, this.shardCount);
  }

  /** The shards this node consumes now, ascending. */
  ownedShards(): number[] {
    return [...this.#shards.keys()].sort((a, b) => a - b);
  }

  /**
   * Starts consuming `shards` (creating their durable consumers if needed). Shards already owned
   * are left as they are. Fails with the underlying error if a consumer cannot be set up; shards
   * set up before the failure stay owned, the failed one is not (a later call retries it).
   */
  async ownShards(shards: readonly number[]): Promise<void> {
    const jsm = this.#jsm;
    if (!jsm) throw new Error("JetStreamIngress.start() must be called first");
    const todo = [...new Set(shards)].filter((shard) => !this.#shards.has(shard));
    for (const shard of todo) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= this.shardCount)
        throw new RangeError(`shard ${shard} is not in 0..${this.shardCount - 1}`);
    }
    // Owned from now on, so a release that comes during the set-up finds the shard and stops it.
    const states = todo.map((shard): ShardConsumer => {
      const state: ShardConsumer = {
        shard,
        messages: undefined,
        setup: undefined,
        closing: false,
        active: new Map(),
        waiting: new Map(),
        inflight: new Set(),
      };
      this.#shards.set(shard, state);
      return state;
    });
    let next = 0;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (next < states.length) {
        const state = states[next++]!;
        if (state.closing) continue; // released before its turn came
        if (this.#stopped) {
          if (this.#shards.get(state.shard) === state) this.#shards.delete(state.shard);
          continue;
        }
        state.setup = this.#setUp(jsm, state);
        try {
          await state.setup;
        } catch (error) {
          failure ??= { error };
        }
      }
    };
    // Consumer set-up is one or two API round trips per shard: a few at a time.
    await Promise.all(Array.from({ length: Math.min(16, states.length) }, worker));
    if (failure) throw failure.error;
  }

  /** Binds `state` to its shard's durable consumer and starts consuming (unless released meanwhile). */
  async #setUp(jsm: JetStreamManager, state: ShardConsumer): Promise<void> {
    try {
      await ensureShardConsumer(jsm, this.stream.name, state.shard, this.consumer);
      if (state.closing) return;
      const consumer = await jetstream(this.nats.connection).consumers.get(
        this.stream.name,
        shardConsumerName(state.shard),
      );
      if (state.closing) return;
      state.messages = await consumer.consume({
        max_messages: Math.min(this.consumer.maxAckPending, 256),
        callback: (msg) => this.#onMessage(state, msg),
      });
      // A release that came meanwhile closes these messages once this set-up has ended.
      if (!state.closing) void this.#watch(state, state.messages);
    } catch (error) {
      if (this.#shards.get(state.shard) === state) this.#shards.delete(state.shard);
      throw error;
    }
  }

  async #watch(state: ShardConsumer, messages: ConsumerMessages): Promise<void> {
    try {
      for await (const status of messages.status()) {
        if (
          status.type === "heartbeats_missed" ||
          status.type === "consumer_deleted" ||
          status.type === "consumer_not_found"
        ) {
          this.logger.warn({ shard: state.shard, status: status.type }, "ingress consumer status");
        }
      }
    } catch {
      // The consumer stopped.
    }
  }

  /**
   * Stops consuming `shards`: no new deliveries, messages delivered but not started are nak'ed
   * for immediate redelivery (to the next owner), and messages in flight finish (persisted and
   * acked, or nak'ed) before this resolves.
   */
  async releaseShards(shards: readonly number[]): Promise<void> {
    await Promise.all(
      shards.map(async (shard) => {
        const state = this.#shards.get(shard);
        if (!state) return;
        state.closing = true;
        this.#shards.delete(shard);
        // A consumer still being set up: let the set-up end, then close what it opened.
        await state.setup?.catch(() => undefined);
        await state.messages?.close().catch(() => undefined);
        for (const queue of state.waiting.values()) for (const msg of queue) msg.nak();
        state.waiting.clear();
        while (state.inflight.size > 0) await Promise.allSettled([...state.inflight]);
      }),
    );
  }

  /** Releases every shard. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.releaseShards(this.ownedShards());
  }

  #onMessage(state: ShardConsumer, msg: JsMsg): void {
    this.stats.delivered++;
    if (msg.redelivered) this.stats.redelivered++;
    if (state.closing) {
      msg.nak();
      return;
    }
    if (msg.redelivered && this.#persisted.has(persistedKey(msg))) {
      // This node persisted it already and its ack was lost: ack again, apply nothing.
      this.stats.alreadyPersisted++;
      this.stats.acked++;
      msg.ack();
      return;
    }
    const key = twinKeyOf(msg.subject);
    const active = state.active.get(key) ?? 0;
    if (active >= this.#perTwin) {
      const queue = state.waiting.get(key);
      if (queue) queue.push(msg);
      else state.waiting.set(key, [msg]);
      return;
    }
    this.#run(state, key, msg);
  }

  #run(state: ShardConsumer, key: string, msg: JsMsg): void {
    state.active.set(key, (state.active.get(key) ?? 0) + 1);
    this.stats.inFlight++;
    const done = this.#handle(msg).finally(() => {
      this.stats.inFlight--;
      state.inflight.delete(done);
      const left = (state.active.get(key) ?? 1) - 1;
      if (left > 0) state.active.set(key, left);
      else state.active.delete(key);
      const queue = state.waiting.get(key);
      const next = queue?.shift();
      if (queue && queue.length === 0) state.waiting.delete(key);
      if (next) {
        if (state.closing) next.nak();
        else this.#run(state, key, next);
      }
    });
    state.inflight.add(done);
  }

  async #handle(msg: JsMsg): Promise<void> {
    const { subject, shard } = deviceSubjectOfStored(msg.subject);
    if (!this.#owns(shard)) {
      this.stats.notOwned++;
      this.#settle(subject, () => msg.nak());
      return;
    }
    const headers = fromNatsHeaders(msg.headers);
    const messageId = headers.get("Nats-Msg-Id") || `seq:${msg.seq}`;
    if (msg.redelivered && this.#twins) {
      let applied = false;
      try {
        applied = await reportInLog(this.#twins, subject, messageId, msg.time.getTime());
      } catch (error) {
        if (retryabilityOf(error) !== "never") {
          this.logger.debug(
            { err: error, subject },
            "could not look for a redelivered report in its twin's log",
          );
          this.stats.retried++;
          this.#settle(subject, () => msg.nak(retryDelay(msg.info.deliveryCount)));
          return;
        }
        // A log that cannot be read for good (a forked twin): processing refuses the report.
      }
      if (applied) {
        this.stats.alreadyPersisted++;
        this.stats.acked++;
        this.#persisted.add(persistedKey(msg));
        this.#settle(subject, () => msg.ack());
        return;
      }
    }
    // Give up waiting on the twin well before the server would redeliver anyway.
    const deadline = Date.now() + Math.max(1000, this.consumer.ackWaitMs - 5000);
    const processed = await this.ingress.process(subject, msg.data, messageId, {
      headers,
      deadline,
      receivedAt: msg.time.getTime(),
    });
    try {
      if (processed.retry) {
        this.stats.retried++;
        // Refused by admission control: back off for at most a few seconds (the overload is the
        // node's, not the message's), and the device hears it is throttled (it stays unapplied).
        const delay = retryDelay(msg.info.deliveryCount);
        msg.nak(processed.throttled ? Math.min(delay, MAX_THROTTLE_DELAY_MS) : delay);
        if (processed.throttled) this.ingress.publishError(subject, processed.reply);
      } else if (processed.rejected) {
        this.stats.terminated++;
        const error = (processed.reply as { error?: { code?: string; message?: string } }).error;
        msg.term(`${error?.code ?? "REJECTED"}: ${error?.message ?? ""}`.slice(0, 200));
        this.ingress.publishError(subject, processed.reply);
      } else {
        this.#persisted.add(persistedKey(msg));
        this.stats.acked++;
        msg.ack();
      }
    } catch (error) {
      // The connection is gone: the server redelivers after ackWait.
      this.logger.debug({ err: error, subject }, "could not settle an ingress message");
    }
  }

  /** Acks or naks; a connection that is gone means the server redelivers after ackWait anyway. */
  #settle(subject: string, settle: () => void): void {
    try {
      settle();
    } catch (error) {
      this.logger.debug({ err: error, subject }, "could not settle an ingress message");
    }
  }
}

function persistedKey(msg: JsMsg): string {
  return `${msg.seq}/${msg.headers?.get("Nats-Msg-Id") ?? ""}`;
}

/** `type.id` of a stored subject `doppel.in.<shard>.<type>.<id>.<channel>` (whatever its validity). */
function twinKeyOf(stored: string): string {
  const tokens = stored.split(".");
  return `${tokens[3]}.${tokens[4]}`;
}
