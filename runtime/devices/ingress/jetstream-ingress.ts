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
 * Held messages: from delivery until it is settled, a message may wait in this node (behind an
 * earlier message of its twin, in the redelivered-report log check, in the twin's mailbox behind
 * a slow commit). While it does, this node tells the server it still works on it: every
 * `ackWait / 4` it sends a progress ack (`+WPI`) for each message it holds, so the server does not
 * redeliver a message this node still has (a slow store no longer turns into redeliveries, each
 * costing a read of its twin's log). A message still gets a bound: {@link PROCESSING_DEADLINE_MS}
 * after it entered its twin's window of `maxInFlightPerTwin` messages, this node stops waiting on
 * the twin and naks it, and with it every message of the twin queued behind the window (a stuck
 * twin gives all its messages back within one deadline, see there).
 *
 * A node that dies before persisting never acks (nor sends progress): after `ackWait` the server
 * redelivers to whichever node owns the shard then. A report that was persisted but not acknowledged — its node
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
 * Ownership: the node consumes through one durable consumer whose filter subjects are the shards
 * it owns (see `stream-config.ts`), so JetStream's work does not grow with the shard count.
 * {@link ownShards} adds shards: the node stops pulling, lets what is in flight be persisted and
 * acked, takes the shards out of any other consumer's filter (a crashed or paused previous
 * owner's: this node holds their leases now) and replaces its consumer by one with the new
 * filter, which delivers every message still in the stream for its shards in stream order (a
 * report another consumer had delivered but not acked comes again at once, not after `ackWait`).
 * Messages delivered but not started when the consumer is replaced are dropped: the new consumer
 * delivers them again, in order. Changes run one after the other, and the shards of all calls
 * made while one runs join the next. {@link releaseShards} stops processing the shards, naks what
 * was delivered but not started, waits for what is in flight to be persisted and acked, and takes
 * the shards out of the filter (an update in place: the other shards keep flowing). Every
 * {@link FILTER_CHECK_EVERY_MS} the node checks that its filter on the server still covers what it
 * owns (another node's edit can overwrite it) and sets the consumer up again if not. A message of a
 * shard this node does not own (any more), or whose lease's local deadline has passed (`owns`), is
 * nak'ed unprocessed. A report that may have been delivered before to another consumer (its stream
 * sequence is at most what some consumer of the stream had delivered when this node took the
 * shard) is checked like a redelivery.
 */
import { randomUUID } from "node:crypto";
import {
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { fromNatsHeaders, type NatsTransport } from "../../../cluster/transport/nats.ts";
import { ErrorCode, retryabilityOf } from "../../core/errors.ts";
import type { TwinRef } from "../../core/ids.ts";
import { present } from "../../core/present.ts";
import type { TwinApi } from "../../core/twin-api.ts";
import type { Logger } from "../../observability/logger.ts";
import { stageClock } from "../../observability/stage-clock.ts";
import { DeviceChannel, parseDeviceSubject } from "../protocol.ts";
import type { DeviceIngress } from "./device-ingress.ts";
import {
  DEFAULT_CONSUMER,
  DEFAULT_STREAM,
  deviceSubjectOfStored,
  ensureIngressStream,
  filtersOf,
  INGRESS_PREFIX,
  type IngressConsumerSettings,
  type IngressStreamSettings,
  isNotFound,
  nodeConsumerConfig,
  shardFilter,
  shardOfFilter,
} from "./stream-config.ts";

export interface JetStreamIngressOptions {
  readonly stream?: IngressStreamSettings;
  readonly consumer?: IngressConsumerSettings;
  /** The durable name of this node's consumer (letters, digits, `-`, `_`); default `ingress-<random>`. */
  readonly consumerName?: string;
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
 * How often a node checks its consumer's filter on the server. A node that gains shards takes
 * them out of the other consumers' filters (`#takeFromOthers`) by reading a filter and writing it
 * back without them. JetStream has no compare-and-set for that, so when its owner changes the
 * same filter meanwhile (adding shards it just gained) one edit overwrites the other. The node
 * then believes it consumes shards its consumer no longer covers, and their reports wait in the
 * stream for ever (seen beside busy loops in `bench:cluster`: a node holding 81 shards whose
 * consumer had 40). Each node checks its own filter this often and sets its consumer up again
 * when shards it owns are missing.
 */
export const FILTER_CHECK_EVERY_MS = 2000;

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
  /** Progress acks sent (`+WPI`: this node still works on a message it holds). */
  progressed: number;
  /** Messages delivered and not yet settled (acked, nak'ed, terminated or dropped). */
  held: number;
}

/** What this node does with one shard it owns. */
interface ShardState {
  readonly shard: number;
  closing: boolean;
  /**
   * Messages of this shard up to this stream sequence may have been delivered before, to this or
   * another consumer (they are checked like redeliveries).
   */
  seenUpTo: number;
  /** Messages in flight per twin key, and those waiting behind them (in order). */
  readonly active: Map<string, number>;
  readonly waiting: Map<string, JsMsg[]>;
  readonly inflight: Set<Promise<void>>;
  /**
   * Per twin key, while a message of the twin is looked for in its log: resolves once that
   * message entered processing, so that a later message of the twin does not overtake it.
   */
  readonly checks: Map<string, Promise<void>>;
}

/** The node's consumer while bound: its filter's shards and its messages. */
interface Bound {
  readonly shards: ReadonlySet<number>;
  readonly messages: ConsumerMessages;
  readonly generation: number;
}

/**
 * How long a message waits for its twin once it entered processing (its twin's window of
 * `maxInFlightPerTwin` messages) before this node gives up on it and naks it (default of the
 * consumer's `processingDeadlineMs`). With progress acks the server does not redeliver meanwhile,
 * so this is only the bound for a stuck twin: long enough for a window of a twin's messages to be
 * committed by a slow store (each waits behind at most `maxInFlightPerTwin − 1` earlier ones),
 * short enough that a twin whose commit never returns gives its messages back within a minute.
 * It used to be `ackWait − 5 s`, which nak'ed messages for having waited behind their twin under a
 * slow store.
 *
 * When a window message gets no answer in time, the messages queued behind the window are nak'ed
 * with it: otherwise each would wait a deadline of its own in a later window (with
 * `maxAckPending` 1024 and windows of 8, one hung twin could hold ~128 windows × 60 s ≈ 2 h of
 * messages in this node's single consumer's ack-pending, stalling every shard). Now each goes
 * back within one deadline and comes again after its nak delay. (The server counts a nak'ed
 * message as pending until it redelivers it: a hung twin still takes a slot per message of its
 * in the stream, it no longer keeps them for hours queued behind its window.) Chosen over ending
 * the progress acks of a message held past a bound: the server would then redeliver it to this
 * same consumer (the node still owns the shard) while the original still waits in the queue, two
 * copies, and no sooner.
 */
export const PROCESSING_DEADLINE_MS = 60_000;
/** Shortest interval between progress rounds (a tiny `ackWait` must not spin). */
const MIN_PROGRESS_INTERVAL_MS = 100;

/** Nak delay of a message of a shard this node does not own (its owner's consumer gets it anyway). */
const NOT_OWNED_DELAY_MS = 1000;
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
    progressed: 0,
    held: 0,
  };
  readonly stream: IngressStreamSettings;
  readonly consumer: IngressConsumerSettings;
  /** The durable name of this node's consumer. */
  readonly consumerName: string;
  readonly #perTwin: number;
  readonly #persisted: RecentSet;
  readonly #twins: Pick<TwinApi, "history"> | undefined;
  readonly #owns: (shard: number) => boolean;
  readonly #shards = new Map<number, ShardState>();
  /** Messages delivered and not settled (each progress round sends each one a progress ack). */
  readonly #held = new Set<JsMsg>();
  readonly #processingDeadlineMs: number;
  #progress: ReturnType<typeof setInterval> | undefined;
  #filterCheck: ReturnType<typeof setInterval> | undefined;
  #jsm: JetStreamManager | undefined;
  #bound: Bound | undefined;
  /** Bumped whenever the consumer is replaced: messages of an older one are dropped. */
  #generation = 0;
  /** The filter changes, one after the other (each brings the consumer to the owned shards). */
  #changes: Promise<void> = Promise.resolve();
  #retry: ReturnType<typeof setTimeout> | undefined;
  #filterCheckQueued = false;
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
    this.consumerName = options.consumerName ?? `ingress-${randomUUID().slice(0, 13)}`;
    this.#perTwin = options.maxInFlightPerTwin ?? 8;
    this.#persisted = new RecentSet(options.rememberPersisted ?? 65_536);
    this.#twins = options.twins;
    this.#owns = options.owns ?? (() => true);
    this.#processingDeadlineMs = this.consumer.processingDeadlineMs ?? PROCESSING_DEADLINE_MS;
  }

  /** Creates or checks the stream. Call once before {@link ownShards}. */
  async start(): Promise<void> {
    this.#jsm = await jetstreamManager(this.nats.connection);
    await ensureIngressStream(this.#jsm, this.stream, this.shardCount);
    if (!this.#progress) {
      const every = Math.max(MIN_PROGRESS_INTERVAL_MS, Math.floor(this.consumer.ackWaitMs / 4));
      this.#progress = setInterval(() => this.#sendProgress(), every);
      this.#progress.unref();
    }
    if (!this.#filterCheck) {
      this.#filterCheck = setInterval(() => this.#queueFilterCheck(), FILTER_CHECK_EVERY_MS);
      this.#filterCheck.unref();
    }
  }

  /** Queues a check of the consumer's filter on the server, unless one is queued already. */
  #queueFilterCheck(): void {
    if (this.#stopped || this.#filterCheckQueued) return;
    this.#filterCheckQueued = true;
    this.#queue(() => {
      this.#filterCheckQueued = false;
      return this.#checkFilter();
    }).catch((error: unknown) =>
      this.logger.warn({ err: error }, "could not check the ingress consumer's filter"),
    );
  }

  /**
   * Sets the consumer up again when its filter on the server lacks shards this node owns (a
   * peer's edit overwrote this node's; see {@link FILTER_CHECK_EVERY_MS}). Runs between filter
   * changes, never during one.
   */
  async #checkFilter(): Promise<void> {
    const bound = this.#bound;
    if (!bound || this.#stopped) return;
    let filters: readonly string[];
    try {
      filters = filtersOf(await this.#jsm!.consumers.info(this.stream.name, this.consumerName));
    } catch (error) {
      if (isNotFound(error)) return; // deleted: #watch sets it up again
      throw error;
    }
    if (this.#bound !== bound) return;
    const covered = new Set(filters);
    // Only shards this node still owns (a shard being released, or whose lease is gone, may be
    // in another node's filter by now).
    const missing = [...bound.shards]
      .filter((shard) => {
        const state = this.#shards.get(shard);
        return state !== undefined && !state.closing && this.#owns(shard) && !covered.has(shardFilter(shard));
      })
      .sort((a, b) => a - b);
    if (missing.length === 0) return;
    this.logger.warn(
      { consumer: this.consumerName, missing },
      "the ingress consumer's filter lost shards this node owns (an edit by another node overwrote it); setting it up again",
    );
    // What the consumer covers now, as far as the server is concerned; the change then sets it up
    // again for every owned shard, as for shards gained (their reports in the stream come in order).
    this.#bound = {
      ...bound,
      shards: new Set([...bound.shards].filter((shard) => covered.has(shardFilter(shard)))),
    };
    await this.#applyOwnership();
  }

  /**
   * One progress round: a progress ack for every held message, so the server restarts its
   * `ackWait` for them (the first one goes out at most 1/4 `ackWait` after delivery, then every
   * 1/4: a late round still leaves 3/4 `ackWait`). A message settled within a round costs at most
   * one needless `+WPI`.
   */
  #sendProgress(): void {
    for (const msg of this.#held) {
      try {
        msg.working();
        this.stats.progressed++;
      } catch (error) {
        // The connection is gone: the server redelivers after ackWait, as for a dead node.
        this.logger.debug({ err: error, subject: msg.subject }, "could not send a progress ack");
      }
    }
  }

  /** `msg` is no longer this node's (settled, or dropped for the next consumer to deliver again). */
  #release(msg: JsMsg): void {
    if (this.#held.delete(msg)) this.stats.held--;
  }

  /** The shards this node consumes now, ascending. */
  ownedShards(): number[] {
    return [...this.#shards.keys()].sort((a, b) => a - b);
  }

  /**
   * Starts consuming `shards` (adding them to this node's consumer). Shards already owned are left
   * as they are. Fails with the underlying error if the consumer cannot be set up; the shards of
   * this call are then not owned (a later call retries them).
   */
  async ownShards(shards: readonly number[]): Promise<void> {
    if (!this.#jsm) throw new Error("JetStreamIngress.start() must be called first");
    if (this.#stopped) return;
    const todo = [...new Set(shards)].filter((shard) => !this.#shards.has(shard));
    for (const shard of todo) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= this.shardCount)
        throw new RangeError(`shard ${shard} is not in 0..${this.shardCount - 1}`);
    }
    // Owned from now on, so a release that comes during the set-up finds the shard and stops it.
    const states = todo.map((shard): ShardState => {
      const state: ShardState = {
        shard,
        closing: false,
        seenUpTo: 0,
        active: new Map(),
        waiting: new Map(),
        inflight: new Set(),
        checks: new Map(),
      };
      this.#shards.set(shard, state);
      return state;
    });
    try {
      await this.#change();
    } catch (error) {
      for (const state of states)
        if (this.#shards.get(state.shard) === state) this.#shards.delete(state.shard);
      throw error;
    }
  }

  /**
   * Stops consuming `shards`: no new deliveries, messages delivered but not started are nak'ed
   * for the next owner, and messages in flight finish (persisted and acked, or nak'ed) before the
   * shards leave this node's consumer filter and this resolves.
   */
  async releaseShards(shards: readonly number[]): Promise<void> {
    const released = shards.flatMap((shard) => {
      const state = this.#shards.get(shard);
      if (!state) return [];
      state.closing = true;
      this.#shards.delete(shard);
      for (const queue of state.waiting.values()) for (const msg of queue) this.#nakNotOwned(msg);
      state.waiting.clear();
      return [state];
    });
    if (released.length === 0) return;
    await Promise.all(
      released.map(async (state) => {
        while (state.inflight.size > 0) await Promise.allSettled([...state.inflight]);
      }),
    );
    await this.#change().catch((error: unknown) => {
      // Its messages are nak'ed meanwhile; the next owner takes the shard out of the filter.
      this.logger.warn({ err: error, shards }, "could not take released shards out of the ingress consumer");
    });
  }

  /** Releases every shard and deletes this node's consumer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
    await this.releaseShards(this.ownedShards());
    await this.#changes.catch(() => undefined);
    if (this.#progress) clearInterval(this.#progress);
    this.#progress = undefined;
    if (this.#filterCheck) clearInterval(this.#filterCheck);
    this.#filterCheck = undefined;
  }

  /** Queues a filter change; resolves when the consumer covers the owned shards (as of its run). */
  #change(): Promise<void> {
    return this.#queue(() => this.#applyOwnership());
  }

  /** Runs `step` after every change and check queued before it (whatever their outcome). */
  #queue(step: () => Promise<void>): Promise<void> {
    const run = this.#changes.catch(() => undefined).then(step);
    this.#changes = run;
    return run;
  }

  /** Brings the consumer's filter to the owned shards (those whose lease this node holds). */
  async #applyOwnership(): Promise<void> {
    const jsm = this.#jsm!;
    const wanted = [...this.#shards.values()]
      .filter((state) => !state.closing && this.#owns(state.shard))
      .map((state) => state.shard)
      .sort((a, b) => a - b);
    const bound = this.#bound;
    const current = bound?.shards ?? new Set<number>();
    if (wanted.length === current.size && wanted.every((shard) => current.has(shard))) return;
    try {
      if (wanted.length === 0 || wanted.every((shard) => current.has(shard))) {
        // Only losses: change the filter in place (or drop the consumer), the rest keeps flowing.
        if (wanted.length === 0) await this.#unbind();
        else {
          await jsm.consumers.update(this.stream.name, this.consumerName, {
            filter_subjects: wanted.map(shardFilter),
          });
          this.#bound = { ...bound!, shards: new Set(wanted) };
        }
        return;
      }
      await this.#unbind();
      const gained = wanted.filter((shard) => !current.has(shard));
      const seenUpTo = await this.#takeFromOthers(jsm, new Set(gained));
      for (const shard of gained) {
        const state = this.#shards.get(shard);
        if (state) state.seenUpTo = seenUpTo;
      }
      await jsm.consumers.add(this.stream.name, nodeConsumerConfig(this.consumerName, wanted, this.consumer));
      const consumer = await jetstream(this.nats.connection).consumers.get(
        this.stream.name,
        this.consumerName,
      );
      const generation = ++this.#generation;
      const messages = await consumer.consume({
        max_messages: Math.min(this.consumer.maxAckPending, 512),
        callback: (msg) => this.#onMessage(generation, msg),
      });
      this.#bound = { shards: new Set(wanted), messages, generation };
      void this.#watch(messages);
    } catch (error) {
      this.#retryLater();
      throw error;
    }
  }

  /** After a failed change, tries again (with whatever is owned then) while not stopped. */
  #retryLater(): void {
    if (this.#stopped || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#change().catch((error: unknown) =>
        this.logger.warn({ err: error }, "could not bring the ingress consumer to the owned shards"),
      );
    }, 1000);
    this.#retry.unref();
  }

  /**
   * Stops this node's consumer: no more pulls, what is in flight is persisted and acked, what was
   * delivered but not started is dropped (the next consumer delivers it again, in order), and the
   * consumer is deleted. Shards whose messages it had delivered are marked as possibly seen.
   */
  async #unbind(): Promise<void> {
    const bound = this.#bound;
    this.#bound = undefined;
    this.#generation++;
    if (bound) await bound.messages.close().catch(() => undefined);
    for (const state of this.#shards.values()) {
      for (const queue of state.waiting.values()) for (const msg of queue) this.#release(msg);
      state.waiting.clear();
    }
    for (;;) {
      const inflight = [...this.#shards.values()].flatMap((state) => [...state.inflight]);
      if (inflight.length === 0) break;
      await Promise.allSettled(inflight);
    }
    if (!bound) return;
    try {
      const info = await this.#jsm!.consumers.info(this.stream.name, this.consumerName);
      for (const shard of bound.shards) {
        const state = this.#shards.get(shard);
        if (state) state.seenUpTo = Math.max(state.seenUpTo, info.delivered.stream_seq);
      }
      await this.#jsm!.consumers.delete(this.stream.name, this.consumerName);
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /**
   * Takes `shards` out of every other consumer's filter (deleting a consumer left with none), and
   * returns the highest stream sequence any other consumer had delivered: a message of `shards` up
   * to it may have been delivered (and persisted) elsewhere.
   */
  async #takeFromOthers(jsm: JetStreamManager, shards: ReadonlySet<number>): Promise<number> {
    let seenUpTo = 0;
    for await (const info of jsm.consumers.list(this.stream.name)) {
      if (info.name === this.consumerName) continue;
      seenUpTo = Math.max(seenUpTo, info.delivered.stream_seq);
      const filters = filtersOf(info);
      const keep = filters.filter((filter) => {
        const shard = shardOfFilter(filter);
        return shard === undefined || !shards.has(shard);
      });
      if (keep.length === filters.length) continue;
      try {
        if (keep.length === 0) await jsm.consumers.delete(this.stream.name, info.name);
        else await jsm.consumers.update(this.stream.name, info.name, { filter_subjects: keep });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    return seenUpTo;
  }

  async #watch(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const status of messages.status()) {
        if (
          status.type === "heartbeats_missed" ||
          status.type === "consumer_deleted" ||
          status.type === "consumer_not_found"
        ) {
          this.logger.warn({ consumer: this.consumerName, status: status.type }, "ingress consumer status");
          // Deleted under this node (an operator; or by a node that took all its shards while this
          // one was paused): set it up again for what it still owns.
          if (status.type !== "heartbeats_missed" && this.#bound?.messages === messages) {
            this.#bound = undefined;
            this.#generation++;
            void messages.close().catch(() => undefined);
            this.#change().catch(() => undefined);
          }
        }
      }
    } catch {
      // The consumer stopped.
    }
  }

  #onMessage(generation: number, msg: JsMsg): void {
    // A replaced consumer's delivery: the next consumer delivers it again, in order.
    if (generation !== this.#generation) return;
    stageClock("delivered", msg.subject);
    this.stats.delivered++;
    this.#held.add(msg);
    this.stats.held++;
    const shard = shardOfStored(msg.subject);
    const state = this.#shards.get(shard);
    if (!state || state.closing) {
      this.#nakNotOwned(msg);
      return;
    }
    const maybeSeen = msg.redelivered || msg.seq <= state.seenUpTo;
    if (maybeSeen) this.stats.redelivered++;
    if (maybeSeen && this.#persisted.has(persistedKey(msg))) {
      // This node persisted it already and its ack was lost: ack again, apply nothing.
      this.stats.alreadyPersisted++;
      this.stats.acked++;
      this.#settle(msg, () => msg.ack());
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
    this.#run(state, key, msg, maybeSeen);
  }

  #run(state: ShardState, key: string, msg: JsMsg, maybeSeen: boolean): void {
    state.active.set(key, (state.active.get(key) ?? 0) + 1);
    this.stats.inFlight++;
    const done = this.#handle(state, key, msg, maybeSeen).finally(() => {
      this.stats.inFlight--;
      state.inflight.delete(done);
      const left = (state.active.get(key) ?? 1) - 1;
      if (left > 0) state.active.set(key, left);
      else state.active.delete(key);
      const queue = state.waiting.get(key);
      const next = queue?.shift();
      if (queue && queue.length === 0) state.waiting.delete(key);
      if (next) {
        if (state.closing) this.#nakNotOwned(next);
        else this.#run(state, key, next, next.redelivered || next.seq <= state.seenUpTo);
      }
    });
    state.inflight.add(done);
  }

  /**
   * Processes one message. A message that may have been delivered before is first looked for in
   * its twin's log; later messages of the same twin wait until it entered processing (messages of
   * one twin enter the twin in stream order).
   */
  async #handle(state: ShardState, key: string, msg: JsMsg, maybeSeen: boolean): Promise<void> {
    const before = state.checks.get(key);
    let entered: (() => void) | undefined;
    if (maybeSeen && this.#twins) {
      const gate = new Promise<void>((resolve) => {
        entered = resolve;
      });
      state.checks.set(key, gate);
      void gate.then(() => {
        if (state.checks.get(key) === gate) state.checks.delete(key);
      });
    }
    try {
      await this.#process(state, key, msg, maybeSeen, before, () => entered?.());
    } finally {
      entered?.();
      // Settled by now, or failed unsettled: then the server redelivers it after ackWait.
      this.#release(msg);
    }
  }

  async #process(
    state: ShardState,
    key: string,
    msg: JsMsg,
    maybeSeen: boolean,
    before: Promise<void> | undefined,
    entered: () => void,
  ): Promise<void> {
    const { subject, shard } = deviceSubjectOfStored(msg.subject);
    if (!this.#owns(shard)) {
      this.stats.notOwned++;
      this.#settle(msg, () => msg.nak(NOT_OWNED_DELAY_MS));
      return;
    }
    const headers = fromNatsHeaders(msg.headers);
    const messageId = headers.get("Nats-Msg-Id") || `seq:${msg.seq}`;
    if (maybeSeen && this.#twins) {
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
          this.#settle(msg, () => msg.nak(retryDelay(msg.info.deliveryCount)));
          return;
        }
        // A log that cannot be read for good (a forked twin): processing refuses the report.
      }
      if (applied) {
        this.stats.alreadyPersisted++;
        this.stats.acked++;
        this.#persisted.add(persistedKey(msg));
        this.#settle(msg, () => msg.ack());
        return;
      }
    }
    // The bound for a stuck twin (see PROCESSING_DEADLINE_MS): progress acks keep the message
    // this node's meanwhile, so waiting behind the twin's earlier messages is no reason to nak.
    const deadline = Date.now() + this.#processingDeadlineMs;
    if (before) await before; // an earlier message of this twin is still looked for in its log
    stageClock("process", subject);
    const processing = this.ingress.process(subject, msg.data, messageId, {
      headers,
      deadline,
      receivedAt: msg.time.getTime(),
    });
    entered();
    const processed = await processing;
    try {
      if (processed.retry) {
        this.stats.retried++;
        // Refused by admission control: back off for at most a few seconds (the overload is the
        // node's, not the message's), and the device hears it is throttled (it stays unapplied).
        const delay = retryDelay(msg.info.deliveryCount);
        msg.nak(processed.throttled ? Math.min(delay, MAX_THROTTLE_DELAY_MS) : delay);
        if (processed.throttled) this.ingress.publishError(subject, processed.reply);
        if (errorCodeOf(processed.reply) === ErrorCode.DeadlineExceeded) this.#nakQueued(state, key);
      } else if (processed.rejected) {
        this.stats.terminated++;
        const error = (processed.reply as { error?: { code?: string; message?: string } }).error;
        msg.term(`${error?.code ?? "REJECTED"}: ${error?.message ?? ""}`.slice(0, 200));
        this.ingress.publishError(subject, processed.reply);
      } else {
        this.#persisted.add(persistedKey(msg));
        this.stats.acked++;
        msg.ack();
        stageClock("ack", subject);
      }
    } catch (error) {
      // The connection is gone: the server redelivers after ackWait.
      this.logger.debug({ err: error, subject }, "could not settle an ingress message");
    } finally {
      this.#release(msg);
    }
  }

  /**
   * The twin `key` did not answer a message of its window in time: naks (with the retry delay)
   * every message queued behind the window, which would otherwise each wait a deadline of their
   * own (see {@link PROCESSING_DEADLINE_MS}).
   */
  #nakQueued(state: ShardState, key: string): void {
    const queue = state.waiting.get(key);
    if (!queue) return;
    state.waiting.delete(key);
    for (const msg of queue) {
      this.stats.retried++;
      this.#settle(msg, () => msg.nak(retryDelay(msg.info.deliveryCount)));
    }
  }

  /** Naks a message of a shard this node does not consume (its owner's consumer delivers it). */
  #nakNotOwned(msg: JsMsg): void {
    this.stats.notOwned++;
    this.#settle(msg, () => msg.nak(NOT_OWNED_DELAY_MS));
  }

  /** Acks or naks; a connection that is gone means the server redelivers after ackWait anyway. */
  #settle(msg: JsMsg, settle: () => void): void {
    this.#release(msg);
    try {
      settle();
    } catch (error) {
      this.logger.debug({ err: error, subject: msg.subject }, "could not settle an ingress message");
    }
  }
}

/** The error code of a processing reply (`{ error: { code } }`), if it is an error. */
function errorCodeOf(reply: object): string | undefined {
  return (reply as { error?: { code?: string } }).error?.code;
}

function persistedKey(msg: JsMsg): string {
  return `${msg.seq}/${msg.headers?.get("Nats-Msg-Id") ?? ""}`;
}

/** The shard of a stored subject `doppel.in.<shard>.<type>.<id>.<channel>`. */
function shardOfStored(stored: string): number {
  const start = INGRESS_PREFIX.length + 1;
  return Number(stored.slice(start, stored.indexOf(".", start)));
}

/** `type.id` of a stored subject `doppel.in.<shard>.<type>.<id>.<channel>` (whatever its validity). */
function twinKeyOf(stored: string): string {
  const tokens = stored.split(".");
  return `${tokens[3]}.${tokens[4]}`;
}
