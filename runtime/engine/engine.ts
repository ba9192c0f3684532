/**
 * The engine of one node: the catalog of resident twins, group commit, reminders and the change
 * feed, wired into the host every activation uses. It knows nothing of gRPC, NATS or validation:
 * it runs already-validated messages against twins this node may write.
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../core/clock.ts";
import { Unavailable } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type { Json, JsonObject } from "../core/json.ts";
import type { ShardOwnership } from "../core/ownership.ts";
import { present } from "../core/present.ts";
import type { ReminderIndexEntry, TwinCommit } from "../core/records.ts";
import type { Logger } from "../observability/logger.ts";
import type { EventStore } from "../persistence/event-store.ts";
import {
  type Activation,
  type ActivationHost,
  type ActivationObserver,
  DEFAULT_TWIN_LIMITS,
  type TwinLimits,
} from "./activation.ts";
import { Catalog } from "./catalog.ts";
import { ChangeFeed } from "./change-feed.ts";
import { type QueuedCommandCounts, queuedCommandCounts } from "./command-delivery.ts";
import { Deadlines } from "./deadlines.ts";
import type { Answer } from "./envelope.ts";
import { committerStore, fenceCheck } from "./fencing.ts";
import { type CommitObserver, GroupCommitter } from "./group-commit.ts";
import type { TurnOutcome, TwinCall, TwinMessage } from "./messages.ts";
import { ReminderService } from "./reminder-service.ts";
import type { TwinRegistry, TwinType } from "./twin-type.ts";

/** How often every owned shard's reminder index is read again by default (see `reminder-service.ts`). */
export const DEFAULT_REMINDER_RESCAN_MS = 60_000;

export interface EngineOptions {
  readonly nodeId: string;
  readonly maxResident: number;
  readonly idleSweepMs: number;
  readonly mailboxSize: number;
  readonly maxPendingEvents: number;
  readonly callTimeoutMs: number;
  readonly reminderPollMs: number;
  readonly reminderBatch: number;
  /** How often every owned shard's reminder index is looked at again (default 60 s; see `reminder-service.ts`). */
  readonly reminderRescanMs?: number;
  readonly commitMaxBatch: number;
  readonly commitMaxInFlight: number;
  /** Default wait for a device's answer to `sendToDevice`, ms (5 s if unset). */
  readonly deviceCommandTimeoutMs?: number;
  /** Most device commands one twin keeps queued for its device (default 100). */
  readonly maxQueuedDeviceCommands?: number;
  /** Size bounds of each twin's reported, desired and state (defaults: `DEFAULT_TWIN_LIMITS`). */
  readonly twinLimits?: TwinLimits;
}

/** Invokes a command on any twin (the node's routed API), for twin-to-twin calls. */
export type TwinCaller = (
  target: TwinRef,
  command: string,
  args: JsonObject,
  call: TwinCall,
) => Promise<Json>;

/**
 * Sends a command to a twin's device and returns its answer (the node's device transport). `id` is
 * the command's id as the device sees it (a fresh one when absent; a queued command's own id on
 * every attempt).
 */
export type DeviceSender = (
  ref: TwinRef,
  command: string,
  args: JsonObject,
  timeoutMs: number,
  id?: string,
) => Promise<Json>;

export class Engine {
  readonly feed = new ChangeFeed();
  readonly catalog: Catalog;
  readonly committer: GroupCommitter;
  readonly reminders: ReminderService;
  /** What the twins' queued device commands did on this node (metrics). */
  readonly queuedCommands: QueuedCommandCounts = queuedCommandCounts();
  #caller: TwinCaller | undefined;
  #deviceSender: DeviceSender | undefined;
  #commitCounter = 0;
  readonly #commitPrefix = randomBytes(6).toString("base64url");

  constructor(
    readonly store: EventStore,
    readonly registry: TwinRegistry,
    readonly clock: Clock,
    readonly ownership: ShardOwnership,
    readonly shardOf: (type: string, id: string) => number,
    readonly options: EngineOptions,
    private readonly logger: Logger,
    observeCommit?: CommitObserver,
    observer?: ActivationObserver,
  ) {
    this.committer = new GroupCommitter(
      committerStore(store, ownership),
      { maxBatch: options.commitMaxBatch, maxInFlight: options.commitMaxInFlight },
      observeCommit,
      (commit) => fenceCheck(ownership, commit),
    );
    const host: ActivationHost = {
      store,
      committer: this.committer,
      clock,
      mailboxSize: options.mailboxSize,
      maxPendingEvents: options.maxPendingEvents,
      callTimeoutMs: options.callTimeoutMs,
      writerFor: (shard) => ownership.writerFor(shard),
      nextCommitId: () => `${this.#commitPrefix}.${(this.#commitCounter++).toString(36)}`,
      callTwin: (target, command, args, call) => {
        if (!this.#caller) throw new Unavailable("twin-to-twin calls are not wired on this node");
        return this.#caller(target, command, args, call);
      },
      sendToDevice: (ref, command, args, timeoutMs, id) => {
        if (!this.#deviceSender) throw new Unavailable("device commands are not wired on this node");
        return this.#deviceSender(ref, command, args, timeoutMs, id);
      },
      deviceCommandTimeoutMs: options.deviceCommandTimeoutMs ?? 5000,
      ...present({ maxQueuedDeviceCommands: options.maxQueuedDeviceCommands }),
      queuedCommandCounts: this.queuedCommands,
      dispatchTo: (activation, message) => this.dispatch(activation.type, activation.id, message),
      twinLimits: options.twinLimits ?? DEFAULT_TWIN_LIMITS,
      deadlines: new Deadlines(clock),
      committed: (activation, commit, reminders) => this.#committed(activation, commit, reminders),
      loaded: (_activation, reminders) => this.reminders.track(reminders),
      indexMayHaveChanged: (activation) => this.reminders.indexMayHaveChanged(activation.shard),
      discard: (activation) => this.catalog.remove(activation),
      warn: (message, error) => logger.warn({ err: error }, message),
      ...(observer ? { observer } : {}),
    };
    this.catalog = new Catalog(host, shardOf, {
      maxResident: options.maxResident,
      idleSweepMs: options.idleSweepMs,
    });
    this.reminders = new ReminderService(
      store,
      clock,
      (entry) => this.#deliverReminder(entry),
      ownership,
      {
        pollMs: options.reminderPollMs,
        batch: options.reminderBatch,
        rescanMs: options.reminderRescanMs ?? DEFAULT_REMINDER_RESCAN_MS,
      },
      (message, error) => logger.warn({ err: error }, message),
    );
  }

  /** Sets how twins reach other twins (the node's routed API). */
  setCaller(caller: TwinCaller): void {
    this.#caller = caller;
  }

  /** Sets how twins reach their devices (`Twin.sendToDevice`). */
  setDeviceSender(sender: DeviceSender): void {
    this.#deviceSender = sender;
  }

  /**
   * Runs a validated message on twin `type/id` (activating it if needed): settles with the turn's
   * outcome once persisted, or with what `answer` makes of it (the caller's one promise).
   */
  dispatch<T = TurnOutcome>(
    type: TwinType,
    id: string,
    message: TwinMessage,
    answer?: Answer<T>,
  ): Promise<T> {
    return this.catalog.dispatch(type, id, message, answer);
  }

  /** The resident activation of a twin, if it is in memory. */
  resident(key: string): Activation | undefined {
    return this.catalog.resident(key);
  }

  #committed(activation: Activation, commit: TwinCommit, reminders: readonly ReminderIndexEntry[]): void {
    if (reminders.length > 0) this.reminders.track(reminders);
    // The commit is the change (no second object per commit); its view is built only if a
    // listener reads it (the desired push reads it only for a change to desired).
    if (this.feed.watched(activation.key)) this.feed.publish(activation.key, commit);
  }

  async #deliverReminder(entry: ReminderIndexEntry): Promise<void> {
    if (!this.registry.has(entry.type)) {
      this.logger.warn({ type: entry.type, id: entry.id }, "reminder for an unregistered twin type skipped");
      return;
    }
    const type = this.registry.get(entry.type);
    await this.dispatch(type, entry.id, { kind: "reminder", name: entry.name, dueAt: entry.dueAt });
  }

  /** Starts idle passivation and reminders. */
  start(): void {
    this.catalog.start();
    this.reminders.start();
  }

  /** Stops reminders, passivates every twin and waits for every write. */
  async stop(): Promise<void> {
    await this.reminders.stop();
    this.catalog.stop();
    await this.catalog.drain();
    await this.committer.whenIdle();
  }
}
