/**
 * The cluster coordinator of one node: it keeps the node in the membership, computes the shard
 * assignment from the consistent-hash ring of live members, and moves shards as members come and
 * go:
 *
 * - **gained** (the ring gives this node a shard): want its lease; once held (new epoch), start
 *   consuming its JetStream partition and polling its reminders.
 * - **lost by rebalance** (join or graceful leave of another node): stop consuming, drain the
 *   shard's twins (finish turns, persist, snapshot, passivate), then release the lease so the new
 *   owner takes it at once.
 * - **lost unexpectedly** (lease not renewed in time, e.g. Redis unreachable or the process was
 *   paused): writes were already refused locally when the lease's local deadline passed; stop
 *   consuming and evict the shard's twins.
 *
 * Placement (who should own a shard) follows membership; safety (who may write) follows leases
 * only, so two nodes that briefly disagree about members never both write one shard.
 */

import type { LeaseHolder, LeaseStore } from "../../cluster/leases/lease-store.ts";
import type { LeaseEvent, ShardLeases } from "../../cluster/leases/shard-leases.ts";
import type { JsonRecord, MemberInfo, Membership } from "../../cluster/membership/membership.ts";
import { HashRing } from "../../cluster/ring/hash-ring.ts";
import type { Subscription, Transport } from "../../cluster/transport/transport.ts";
import { Unavailable } from "../core/errors.ts";
import { present } from "../core/present.ts";
import type { Catalog } from "../engine/catalog.ts";
import type { ReminderService } from "../engine/reminder-service.ts";
import type { Logger } from "../observability/logger.ts";
import type { Placement } from "./placement.ts";

/** What consumes a shard's device input (the JetStream ingress). */
export interface ShardConsumers {
  ownShards(shards: readonly number[]): Promise<void>;
  releaseShards(shards: readonly number[]): Promise<void>;
}

export interface CoordinatorOptions {
  readonly nodeId: string;
  readonly shardCount: number;
  readonly membership: Membership;
  readonly leases: ShardLeases;
  readonly leaseStore: LeaseStore;
  readonly catalog: Catalog;
  readonly reminders: ReminderService;
  readonly consumers: ShardConsumers | undefined;
  readonly logger: Logger;
  /** What this node publishes about itself (gRPC address, resident twins...). */
  readonly meta: () => JsonRecord;
  /** How often the metadata is refreshed in the membership. */
  readonly metaEveryMs: number;
  /** Where joins and leaves are announced, so peers re-read the membership at once. */
  readonly announce?: Transport;
  /**
   * After handing over on leave, how long the node keeps answering (with "not owner") so calls
   * peers sent before they learnt of the leave get a retryable answer instead of a timeout.
   */
  readonly leaveGraceMs: number;
}

/** The subject a cluster's membership changes are announced on. */
export function announceSubject(cluster: string): string {
  return `doppel.cluster.${cluster}.changed`;
}

/** A cluster-wide picture, for `doppel cluster`. */
export interface ClusterStatus {
  readonly cluster: string;
  readonly shardCount: number;
  readonly self: string;
  readonly members: readonly MemberInfo[];
  /** Shard → the node the ring assigns it to. */
  readonly assignment: readonly string[];
  /** Shard → the lease holder now. */
  readonly holders: ReadonlyMap<number, LeaseHolder>;
}

export class ClusterCoordinator implements Placement {
  readonly nodeId: string;
  #assignment: readonly string[] = [];
  #queue: Promise<void> = Promise.resolve();
  #stopping = false;
  #unsubscribe: (() => void)[] = [];
  #metaTimer: NodeJS.Timeout | undefined;
  /** Pending retries of consumer set-ups that failed (see {@link #consume}). */
  readonly #retries = new Set<NodeJS.Timeout>();
  /** Shards lost or released since the last {@link #afterLosses}, by shard. */
  #lost = new Map<number, LeaseEvent & { type: "lost" }>();

  constructor(private readonly options: CoordinatorOptions) {
    this.nodeId = options.nodeId;
  }

  /** Joins the membership and takes this node's shards. Resolves once the first assignment is computed. */
  async start(): Promise<void> {
    const { membership, leases, announce } = this.options;
    this.#unsubscribe.push(leases.onChange((event) => this.#onLease(event)));
    await membership.join({ nodeId: this.nodeId, meta: this.options.meta() });
    this.#unsubscribe.push(membership.onChange(() => this.#schedule()));
    if (announce) {
      const sub: Subscription = announce.subscribe(announceSubject(membership.cluster), () => this.refresh());
      this.#unsubscribe.push(() => sub.unsubscribe());
      this.#announce();
    }
    this.#schedule();
    await this.#queue;
    this.#metaTimer = setInterval(() => {
      membership
        .update(this.options.meta())
        .catch((error: unknown) =>
          this.options.logger.debug({ err: error }, "membership metadata not updated"),
        );
    }, this.options.metaEveryMs);
    this.#metaTimer.unref();
  }

  ownerOf(shard: number): string | undefined {
    return this.#assignment[shard];
  }

  owns(shard: number): boolean {
    try {
      this.options.leases.writerFor(shard);
      return true;
    } catch {
      return false;
    }
  }

  #announce(): void {
    try {
      this.options.announce?.publish(announceSubject(this.options.membership.cluster), new Uint8Array());
    } catch {
      // Peers still learn of the change at their next heartbeat.
    }
  }

  /** Recomputes the assignment now (e.g. when a peer announces a change). */
  refresh(): void {
    void this.options.membership.refresh().catch(() => undefined);
  }

  #schedule(): void {
    if (this.#stopping) return;
    this.#queue = this.#queue
      .then(() => this.#rebalance())
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error }, "rebalance failed; retrying on the next change"),
      );
  }

  async #rebalance(): Promise<void> {
    const { membership, leases, shardCount, logger } = this.options;
    const members = membership.members().map((m) => m.nodeId);
    // Cut off from the membership store: keep routing by the last known assignment. Leases, not
    // membership, keep writes safe, and they expire on their own if the store stays away.
    if (members.length === 0) return;
    const ring = new HashRing(members);
    const assignment = ring.assignment(shardCount);
    const before = this.#assignment;
    this.#assignment = assignment;
    const mine = ring.shardsOf(this.nodeId, shardCount);
    const mineSet = new Set(mine);
    const lost = leases.wantedShards().filter((shard) => !mineSet.has(shard));
    leases.want(mine);
    const moved =
      before.length === 0 ? shardCount : assignment.filter((node, shard) => node !== before[shard]).length;
    if (moved > 0) {
      logger.info(
        { members, owned: mine.length, handingOver: lost.length, moved },
        "shard assignment changed",
      );
    }
    if (lost.length > 0) await this.#handOver(lost);
  }

  /** Stops consuming `shards`, drains their twins, releases their leases. */
  async #handOver(shards: readonly number[]): Promise<void> {
    const { consumers, catalog, leases, logger } = this.options;
    const set = new Set(shards);
    const started = performance.now();
    await consumers?.releaseShards(shards);
    await catalog.drain((activation) => set.has(activation.shard));
    await leases.release(shards);
    logger.info({ shards: shards.length, ms: Math.round(performance.now() - started) }, "shards handed over");
  }

  #onLease(event: LeaseEvent): void {
    const { reminders, logger } = this.options;
    if (event.type === "gained") {
      logger.debug({ shard: event.shard, epoch: event.epoch }, "shard lease gained");
      this.#lost.delete(event.shard);
      this.#consume(event.shard, 0);
      void reminders.poll();
      return;
    }
    if (event.reason === "closed") return;
    // This node may no longer write the shard (already refused locally). Losses come in bursts (a
    // stall past the deadlines loses every shard, each by its own timer): they are taken together
    // once the burst's callbacks have run. A release (a hand-over) has stopped the shard's
    // consumer and drained its twins already; it is taken too, in case the shard was gained while
    // its hand-over ran (then it is released now, and not left consumed).
    this.#lost.set(event.shard, event);
    if (this.#lost.size === 1) setImmediate(() => this.#afterLosses());
  }

  /**
   * Stops consuming and drains the twins of the shards lost since the last call, in one go,
   * and logs those lost without a hand-over as one warning per reason (and taker) instead of a
   * line per shard.
   */
  #afterLosses(): void {
    const { consumers, catalog, logger } = this.options;
    const lost = this.#lost;
    this.#lost = new Map();
    if (lost.size === 0) return;
    const groups = new Map<string, { reason: string; by?: string; shards: number[] }>();
    for (const event of lost.values()) {
      if (event.reason === "released") continue;
      const key = `${event.reason} ${event.by?.node ?? ""}`;
      const group = groups.get(key) ?? {
        reason: event.reason,
        ...present({ by: event.by?.node }),
        shards: [],
      };
      group.shards.push(event.shard);
      groups.set(key, group);
    }
    for (const { shards, ...group } of groups.values()) {
      shards.sort((a, b) => a - b);
      logger.warn({ ...group, count: shards.length, shards: shards.slice(0, 64) }, "shard leases lost");
    }
    void consumers?.releaseShards([...lost.keys()]).catch(() => undefined);
    void catalog.drain((activation) => lost.has(activation.shard));
    if (groups.size > 0) this.#schedule();
  }

  /**
   * Starts consuming a held shard's device input. A failed set-up (NATS unreachable for a moment,
   * a JetStream API timeout) is retried with a growing delay (0.5 s, 1 s, 2 s ... 30 s) for as long
   * as this node holds the shard's lease: a shard held but not consumed would leave its devices'
   * reports waiting in the stream. A lease lost meanwhile ends the retries (its `lost` event
   * releases the shard's consumer, and the check before each attempt sees it is not held).
   */
  #consume(shard: number, attempt: number): void {
    const { consumers, leases, logger } = this.options;
    // A shard held but no longer wanted is being handed over: consuming it now would outlive the
    // hand-over, which has stopped its consumer already.
    if (!consumers || this.#stopping || !this.owns(shard) || !leases.wants(shard)) return;
    consumers.ownShards([shard]).catch((error: unknown) => {
      if (this.#stopping || !this.owns(shard) || !leases.wants(shard)) return;
      const delayMs = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      logger.warn(
        { err: error, shard, attempt: attempt + 1, retryInMs: delayMs },
        "could not start consuming a held shard; retrying",
      );
      const timer = setTimeout(() => {
        this.#retries.delete(timer);
        this.#consume(shard, attempt + 1);
      }, delayMs);
      timer.unref();
      this.#retries.add(timer);
    });
  }

  /**
   * A picture of the whole cluster (members, assignment, lease holders and epochs). Fails with
   * `Unavailable` while the lease store (Redis) cannot be reached.
   */
  async status(): Promise<ClusterStatus> {
    const cluster = this.options.membership.cluster;
    let holders: ReadonlyMap<number, LeaseHolder>;
    try {
      holders = await this.options.leaseStore.holders();
    } catch (error) {
      throw new Unavailable(
        `cannot read the shard leases of cluster "${cluster}": ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    return {
      cluster,
      shardCount: this.options.shardCount,
      self: this.nodeId,
      members: this.options.membership.members(),
      assignment: this.#assignment,
      holders,
    };
  }

  /**
   * Leaves gracefully: leaves the membership (peers reassign this node's shards and wait for
   * them), then hands every shard over (stop consuming, drain twins, release leases).
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#metaTimer);
    for (const timer of this.#retries) clearTimeout(timer);
    this.#retries.clear();
    await this.#queue;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    await this.options.membership.leave();
    this.#announce();
    const held = [...new Set([...this.options.leases.wantedShards(), ...this.options.leases.ownedShards()])];
    if (held.length > 0) await this.#handOver(held);
    await this.options.leases.close({ release: true });
    this.#announce();
    await new Promise((resolve) => setTimeout(resolve, this.options.leaveGraceMs));
  }
}
