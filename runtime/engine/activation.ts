/**
 * An activation: one twin resident in memory. It owns the twin's mailbox and runs its turns one at
 * a time (never two turns of one twin at once; many twins run concurrently).
 *
 * Persistence is pipelined: while one batch of this twin's events is being written, later turns
 * already run against the uncommitted state and collect into the next batch. Replies (and device
 * acks) are released only when the batch holding their turn is persisted. If a write fails, every
 * reply waiting on it fails, the twin falls back to its last persisted state, and it reloads from
 * the store before its next turn (the write's outcome may be unknown).
 *
 * Invariants:
 * - `#committed` is exactly what the store holds for this twin (as far as this node knows);
 * - `#data` = `#committed` + the events of `#inflight` and `#pending`;
 * - at most one batch is in the store's hands at a time (`#inflight`), so writes stay in order.
 */

import { randomUUID } from "node:crypto";
import type { Clock } from "../core/clock.ts";
import { toMillis } from "../core/duration.ts";
import { EDGE_OWNED_EPOCH, edgeOwnedError, edgeOwnerOf } from "../core/edge-owner.ts";
import {
  CallCycle,
  DeadlineExceeded,
  DoppelError,
  ErrorCode,
  FailedPrecondition,
  HandlerFailed,
  Internal,
  InvalidArgument,
  Quarantined,
  ResourceExhausted,
  Unavailable,
  VersionConflict,
} from "../core/errors.ts";
import { parseRef, refKey, type TwinRef } from "../core/ids.ts";
import { type Json, type JsonObject, jsonSizeBound, requireJsonObject } from "../core/json.ts";
import { type Mutable, present } from "../core/present.ts";
import type { EventRecord, ReminderIndexEntry, TwinCommit, Writer } from "../core/records.ts";
import {
  bindTwin,
  type DeviceCommandOptions,
  type DeviceCommandSent,
  type QueuedDeviceCommandOptions,
  type Reminder,
  type ScheduleOptions,
  type Twin,
  type TwinBinding,
  type TwinEvent,
  type When,
} from "../core/twin.ts";
import { activeContext, inSpanSync, SpanKind, traces, tracingOn } from "../observability/tracing.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { lateLeavesDropped } from "../shadow/reported-times.ts";
import { computeDelta } from "../shadow/shadow.ts";
import { CommandDelivery, type QueuedCommandCounts, settleQueuedCommands } from "./command-delivery.ts";
import type { Deadlines } from "./deadlines.ts";
import { type Answer, Envelope } from "./envelope.ts";
import type { CommitListener, GroupCommitter } from "./group-commit.ts";
import type { TurnOutcome, TwinCall, TwinMessage } from "./messages.ts";
import {
  COMMANDS_REMINDER,
  CommandEvent,
  DEFAULT_MAX_QUEUED_COMMANDS,
  isUnreachable,
  MAX_QUEUE_FOR_MS,
  nextExpiry,
} from "./queued-commands.ts";
import { Turn } from "./turn.ts";
import { TurnCommit } from "./turn-commit.ts";
import {
  BuiltIn,
  foldInto,
  fromSnapshot,
  initialData,
  judgeStamp,
  type TwinData,
  toSnapshot,
} from "./twin-data.ts";
import type { TwinType } from "./twin-type.ts";

/** What an activation needs from its node. One instance is shared by all activations. */
export interface ActivationHost {
  readonly store: EventStore;
  readonly committer: GroupCommitter;
  readonly clock: Clock;
  /** Most messages waiting in one twin's mailbox; more are refused with `ResourceExhausted`. */
  readonly mailboxSize: number;
  /** Most uncommitted events a twin may run ahead of the store before its turns wait. */
  readonly maxPendingEvents: number;
  /** Timeout of a twin-to-twin call, unless the caller's own deadline is sooner. */
  readonly callTimeoutMs: number;
  /** The writer identity (node, lease epoch) for events of `shard`. Throws `Unavailable` if this node may not write it. */
  writerFor(shard: number): Writer;
  nextCommitId(): string;
  /** Invokes a command on another twin (wherever it lives), on behalf of the calling turn's principal. */
  callTwin(target: TwinRef, command: string, args: JsonObject, call: TwinCall): Promise<Json>;
  /**
   * Sends a command to twin `ref`'s device and returns its answer (request/reply on the device's
   * `cmd` subject). Absent when the node has no device transport (`Unavailable`).
   */
  sendToDevice?(
    ref: TwinRef,
    command: string,
    args: JsonObject,
    timeoutMs: number,
    id?: string,
  ): Promise<Json>;
  /** Default wait for a device's answer to a command, ms. */
  readonly deviceCommandTimeoutMs?: number;
  /** Most device commands one twin keeps queued (`limits.maxQueuedDeviceCommands`; default 100). */
  readonly maxQueuedDeviceCommands?: number;
  /** What the twins' device-command queues did (metrics); optional. */
  readonly queuedCommandCounts?: QueuedCommandCounts;
  /**
   * Runs `message` on the activation's twin, activating it again if it left memory meanwhile
   * (a queued command's outcome). Absent: queued on the activation itself.
   */
  dispatchTo?(activation: Activation, message: TwinMessage): Promise<TurnOutcome>;
  /** Most bytes (as JSON) of a twin's reported, desired and state; a turn that would exceed one is refused. */
  readonly twinLimits?: TwinLimits;
  /**
   * Called after each batch of this twin's events is persisted, with the commit written and the
   * reminders that were set or moved by it.
   */
  committed(activation: Activation, commit: TwinCommit, reminders: readonly ReminderIndexEntry[]): void;
  /**
   * Called when the twin's state was read from the store (its load, or a reload that found events
   * this node did not commit), with the reminder index entries that state implies: the load may have
   * repaired those of its last commit, and the events found were committed with theirs.
   */
  loaded?(activation: Activation, reminders: readonly ReminderIndexEntry[]): void;
  /**
   * Called when a commit of the twin failed in a way that may have left reminder index entries this
   * node has not seen (an unknown outcome that may have landed, another writer's commit).
   */
  indexMayHaveChanged?(activation: Activation): void;
  /** The callers' deadlines, on one timer: an envelope is armed when queued (none: no deadline is kept). */
  readonly deadlines?: Deadlines;
  /** Called when an activation must leave the catalog at once (load failure, quarantine). */
  discard(activation: Activation): void;
  /** Counts activations, passivations and turns (metrics); optional. */
  readonly observer?: ActivationObserver;
  /** Reports an error that has no caller to go to (snapshot writes, lifecycle hooks). */
  warn(message: string, error: unknown): void;
}

/** Size bounds of one twin, in bytes of JSON (config `limits.maxReportedBytes` etc.). */
export interface TwinLimits {
  readonly maxReportedBytes: number;
  readonly maxDesiredBytes: number;
  readonly maxStateBytes: number;
}

/** The defaults of {@link TwinLimits}. */
export const DEFAULT_TWIN_LIMITS: TwinLimits = {
  maxReportedBytes: 256 * 1024,
  maxDesiredBytes: 256 * 1024,
  maxStateBytes: 1024 * 1024,
};

/** What the engine counts (metrics). Every method is cheap and never throws. */
export interface ActivationObserver {
  activated(): void;
  passivated(): void;
  /** The twin was quarantined here (a forked or out-of-epoch log). */
  quarantined(): void;
  /** The store refused a commit because another writer appended first. */
  conflicted(): void;
  /** The store refused a twin's creation: its creator's quota (`maxTwins`) is used up. */
  overQuota(): void;
  turn(kind: string, ok: boolean, millis: number): void;
}

interface Batch {
  readonly start: TwinData;
  end: TwinData;
  readonly records: EventRecord[];
  /** The envelopes of the batch's turns (each with its outcome), answered once it is persisted. */
  readonly waiters: Envelope[];
}

export type ActivationStatus = "loading" | "active" | "passivating" | "gone";

const NO_CHAIN: readonly string[] = Object.freeze([]);

/** The reminder changes of a batch that changed no reminder (shared: the fold keeps an unchanged list's identity). */
const NO_REMINDER_CHANGES: TwinCommit["reminders"] = Object.freeze({
  set: Object.freeze([]) as readonly ReminderIndexEntry[],
  clear: Object.freeze([]) as readonly string[],
});

/** Marks a reported message that was dropped as a duplicate. */
const DUPLICATE = Symbol("duplicate");
/** Marks a stamped reported message that was dropped as stale (old sequence number, or every field late). */
const STALE = Symbol("stale");

export class Activation implements TwinBinding, CommitListener {
  readonly key: string;
  /** The twin's reference, one for all its commits and calls (frozen: it is shared). */
  readonly #ref: TwinRef;
  lastUsed: number;
  /** The catalog's recency list: the twin used just before this one, and just after (null: none). */
  older: Activation | null = null;
  newer: Activation | null = null;
  #status: ActivationStatus = "loading";
  readonly #host: ActivationHost;
  readonly #twin: Twin<object, TwinEvent, object>;
  #committed!: TwinData;
  #data!: TwinData;
  /** An upper bound of the JSON size of the reported object `#reportedBytesOf` (see `#checkBounds`). */
  #reportedBytes = 0;
  #reportedBytesOf: JsonObject | undefined;
  #snapshotSeq = 0;
  #turn: Turn | null = null;
  #mailbox: Envelope[] | null = null;
  #running = false;
  #needsReload = false;
  #pending: Batch | null = null;
  #inflight: Batch | null = null;
  #gone: Promise<void> | null = null;
  #settledWaiters: (() => void)[] | null = null;
  /** The delivery of queued device commands, made when the twin first has any. */
  #delivery: CommandDelivery | null = null;

  constructor(
    readonly type: TwinType,
    readonly id: string,
    readonly shard: number,
    host: ActivationHost,
  ) {
    this.key = `${type.name}/${id}`;
    this.#ref = Object.freeze({ type: type.name, id });
    this.#host = host;
    this.lastUsed = host.clock.now();
    this.#twin = type.instantiate();
    bindTwin(this.#twin, this);
  }

  get status(): ActivationStatus {
    return this.#status;
  }

  /** Messages waiting in the mailbox. */
  get queued(): number {
    return this.#mailbox?.length ?? 0;
  }

  /** True while a turn runs, messages wait, or events are not yet persisted. */
  get busy(): boolean {
    return (
      this.#running || (this.#mailbox?.length ?? 0) > 0 || this.#pending !== null || this.#inflight !== null
    );
  }

  /** The persisted state (what queries of a resident twin see). */
  get committedData(): TwinData {
    return this.#committed;
  }

  /** Resolves when this activation has left memory (after passivation). */
  get gone(): Promise<void> {
    return this.#gone ?? Promise.resolve();
  }

  /** Loads the twin (latest snapshot + later events), then runs `onActivate` and queued messages. */
  async start(): Promise<void> {
    try {
      // Refuses at once (safe to retry elsewhere) when this node does not own the shard.
      const writer = this.#host.writerFor(this.shard);
      // Claims the twin at this node's lease epoch before serving it: from here on the store
      // refuses every commit of an older epoch (a paused old owner's late write), even before
      // this activation's first commit. Refused (not-owner) if a newer epoch claimed it.
      const loaded = await this.#host.store
        .loadTwin(this.ref, { claimEpoch: writer.epoch })
        .catch((error: unknown) => this.#edgeOwned(error));
      if (loaded.quarantine !== undefined) {
        throw new Quarantined(`${this.key} is quarantined: ${loaded.quarantine}`, {
          reason: loaded.quarantine,
        });
      }
      // The replay folds into this fresh object (no object per event).
      const data: Mutable<TwinData> = loaded.snapshot
        ? fromSnapshot(loaded.snapshot)
        : initialData(this.#twin);
      let epoch = 0;
      for (const record of loaded.events) {
        // Lease epochs only grow: an event from an older epoch after a newer one was written by a
        // writer that had lost its lease. Never merged silently: the twin is quarantined.
        if (record.writer.epoch < epoch) {
          const reason = `event ${record.seq} was written by ${record.writer.node} at lease epoch ${record.writer.epoch} after epoch ${epoch}`;
          this.#host.observer?.quarantined();
          await this.#host.store.quarantine(this.ref, reason).catch(() => undefined);
          throw new Quarantined(`${this.key} is quarantined: ${reason}`, { reason });
        }
        epoch = record.writer.epoch;
        foldInto(this.#twin, data, record);
      }
      if (epoch > writer.epoch) {
        throw new Unavailable(
          `${this.key} was written at lease epoch ${epoch}, newer than this node's ${writer.epoch}: its lease is stale; retry`,
          { retry: "not-owner", shard: this.shard },
        );
      }
      this.#committed = data;
      this.#data = data;
      this.#snapshotSeq = loaded.snapshot?.seq ?? 0;
      this.#host.loaded?.(this, this.#indexEntries(data));
      this.#host.observer?.activated();
    } catch (error) {
      this.#status = "gone";
      const failure =
        error instanceof DoppelError && error.code !== ErrorCode.Internal
          ? error
          : new Unavailable(`${this.key} could not be activated: ${DoppelError.from(error).message}`);
      for (const envelope of this.#mailbox?.splice(0) ?? []) envelope.reject(failure);
      this.#host.discard(this);
      return;
    }
    this.#status = "active";
    if (this.#committed.deviceCommands.length > 0) this.#commandDelivery().ensure();
    if (this.#twin.onActivate) {
      this.#mailbox ??= [];
      // Events onActivate writes into a twin that does not exist yet create it: on behalf of
      // the message that woke it, whose quota counts the creation.
      const waking = this.#committed.seq === 0 ? this.#mailbox[0]?.message : undefined;
      this.#mailbox.unshift(
        new Envelope(
          { kind: "activate", ...present({ principal: waking?.principal, maxTwins: waking?.maxTwins }) },
          () => {},
          (error) => this.#host.warn(`${this.key}: onActivate failed`, error),
        ),
      );
    }
    this.#kick();
  }

  /**
   * Rethrows a refused claim; when the twin's epoch is {@link EDGE_OWNED_EPOCH} (a thick-edge twin
   * replicated into this store), as the precise `edge-owned` error naming its edge instead of a
   * not-owner refusal the router would retry.
   */
  async #edgeOwned(error: unknown): Promise<never> {
    if (error instanceof DoppelError && error.details?.["twinEpoch"] === EDGE_OWNED_EPOCH) {
      const [last] = await this.#host.store.readEvents(this.ref, 0, 1).catch(() => []);
      throw edgeOwnedError(this.ref, edgeOwnerOf(last?.writer) ?? "(unknown)");
    }
    throw error;
  }

  /**
   * Queues a message; the promise settles when its turn's effects are persisted (or it failed),
   * with the turn's outcome or what `answer` makes of it.
   */
  enqueue<T = TurnOutcome>(message: TwinMessage, answer?: Answer<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const queued = this.#mailbox?.length ?? 0;
      if (queued >= this.#host.mailboxSize) {
        reject(
          new ResourceExhausted(
            `${this.key}: mailbox is full (${this.#host.mailboxSize} messages waiting); retry later`,
            {
              mailboxSize: this.#host.mailboxSize,
            },
          ),
        );
        return;
      }
      // The sender's trace context only matters (and is only looked up) when tracing is on.
      const envelope = tracingOn()
        ? new Envelope(message, resolve, reject, answer, activeContext())
        : new Envelope(message, resolve, reject, answer);
      // One clock read for the use, the deadline's arming and (for a message run at once) its turn.
      const now = this.#host.clock.now();
      this.lastUsed = now;
      const deadlines = this.#host.deadlines;
      if (deadlines) envelope.arm(deadlines, this.key, now);
      // An idle active twin runs the message at once: it never waits in a mailbox (none is made).
      if (queued === 0 && !this.#running && this.#status === "active") this.#kick(envelope, now);
      else {
        (this.#mailbox ??= []).push(envelope);
        this.#kick();
      }
    });
  }

  /**
   * Runs the mailbox (after `first`, a message that did not wait in it) if no one does. Turns
   * whose handlers are synchronous run here, one after another, without a promise; from the
   * first message that must wait (a reload, the bound on pending events, a handler that
   * returned a promise) the mailbox goes on in `#run`.
   */
  #kick(first?: Envelope, now?: number): void {
    if (!first && (this.#running || this.#status === "loading" || (this.#mailbox?.length ?? 0) === 0)) return;
    this.#running = true;
    let envelope = first;
    try {
      for (;;) {
        if (this.#needsReload || this.#overPending()) {
          if (envelope) (this.#mailbox ??= []).unshift(envelope);
          void this.#run();
          return;
        }
        let at: number | undefined;
        if (envelope) at = now;
        else envelope = this.#next();
        if (!envelope) break;
        const turn = this.#live(envelope, at) ? this.#runTurn(envelope, at) : undefined;
        envelope = undefined;
        if (turn) {
          void this.#run(turn);
          return;
        }
      }
    } catch (error) {
      this.#stopped();
      throw error;
    }
    this.#stopped();
  }

  async #run(first?: Promise<void>): Promise<void> {
    this.#running = true;
    try {
      if (first) await first;
      for (;;) {
        const envelope = this.#next();
        if (!envelope) break;
        if (this.#needsReload && !(await this.#reload(envelope))) continue;
        if (this.#overPending()) await this.#whenSettled();
        // A turn whose handler is synchronous runs to its end here, without a promise of its own.
        const turn = this.#runTurn(envelope);
        if (turn) await turn;
      }
    } finally {
      this.#stopped();
    }
  }

  /** The next message whose caller still waits; those whose deadline passed while they waited are refused. */
  #next(): Envelope | undefined {
    for (;;) {
      const envelope = this.#mailbox?.shift();
      if (!envelope || this.#live(envelope)) return envelope;
    }
  }

  /** False (and the message refused) when the caller's deadline passed while the message waited. */
  #live(envelope: Envelope, now?: number): boolean {
    const { deadline } = envelope.message;
    if (deadline === undefined || (now ?? this.#host.clock.now()) <= deadline) return true;
    envelope.reject(new Unavailable(`${this.key}: the caller's deadline passed while the message waited`));
    return false;
  }

  /** True when this twin runs as far ahead of the store as it may: its next turn waits for the write. */
  #overPending(): boolean {
    return (
      this.#inflight !== null &&
      this.#pending !== null &&
      this.#pending.records.length >= this.#host.maxPendingEvents
    );
  }

  #stopped(): void {
    this.#running = false;
    if (this.#mailbox?.length === 0) this.#mailbox = null;
    this.#notifySettled();
  }

  async #reload(envelope: Envelope): Promise<boolean> {
    try {
      await this.#whenSettled();
      let data = this.#committed;
      const records = await this.#host.store.readEvents(this.ref, data.seq);
      const newest = records.at(-1)?.writer.epoch ?? 0;
      const writer = this.#host.writerFor(this.shard);
      if (newest > writer.epoch) {
        throw new Unavailable(
          `${this.key} was written at lease epoch ${newest}, newer than this node's ${writer.epoch}: its lease is stale; retry`,
          { retry: "not-owner", shard: this.shard },
        );
      }
      if (records.length > 0) {
        const next: Mutable<TwinData> = { ...data };
        for (const record of records) foldInto(this.#twin, next, record);
        data = next;
      }
      this.#committed = data;
      this.#data = data;
      this.#needsReload = false;
      if (records.length > 0) this.#host.loaded?.(this, this.#indexEntries(data));
      return true;
    } catch (error) {
      if (error instanceof DoppelError && error.code === ErrorCode.ConcurrencyConflict) {
        // The store found a fork in the log (left by data the fence did not guard): never merged.
        envelope.reject(error);
        await this.#quarantine(error.message);
        return false;
      }
      envelope.reject(
        error instanceof DoppelError && error.retryable
          ? error
          : new Unavailable(
              `${this.key}: could not reload after a failed write: ${DoppelError.from(error).message}`,
            ),
      );
      return false;
    }
  }

  /**
   * Runs one turn. When the handler is synchronous (returns no promise) the whole turn runs in
   * this call and nothing is returned; otherwise the promise of its end.
   */
  #runTurn(envelope: Envelope, now?: number): Promise<void> | undefined {
    const message = envelope.message;
    const started = performance.now();
    let turn: Turn;
    let handled: Handled | Promise<Handled>;
    try {
      const writer = this.#host.writerFor(this.shard);
      turn = new Turn(this.#twin, message, this.#data, this.#host, writer, now ?? this.#host.clock.now());
      this.#turn = turn;
      const current = turn;
      if (envelope.context !== undefined && traces(envelope.context)) {
        const attributes: Record<string, string> = { "doppel.twin": this.key };
        if (message.kind === "command") attributes["doppel.command"] = message.name;
        // A synchronous handler's turn stays synchronous inside its span too.
        handled = inSpanSync(
          `turn ${message.kind}`,
          SpanKind.INTERNAL,
          attributes,
          () => this.#handle(current),
          envelope.context,
        );
      } else handled = this.#handle(current); // untraced: no span wrapper on the hot path
    } catch (error) {
      this.#turnFailed(envelope, error, started);
      return undefined;
    }
    if (!isPromise(handled)) {
      this.#turnHandled(envelope, turn, handled, started);
      return undefined;
    }
    return handled.then(
      (result) => this.#turnHandled(envelope, turn, result, started),
      (error: unknown) => this.#turnFailed(envelope, error, started),
    );
  }

  #turnFailed(envelope: Envelope, error: unknown, started: number): void {
    this.#turn = null;
    this.#host.observer?.turn(envelope.message.kind, false, performance.now() - started);
    envelope.reject(this.#describeFailure(envelope.message, error));
  }

  /** The end of a turn whose handler returned `result`: checks its bounds, then batches its events. */
  #turnHandled(envelope: Envelope, turn: Turn, result: Handled, started: number): void {
    const message = envelope.message;
    try {
      if (turn.records.length > 0) this.#checkBounds(message, this.#data, turn.data);
    } catch (error) {
      this.#turnFailed(envelope, error, started);
      return;
    }
    this.#turn = null;
    this.#host.observer?.turn(message.kind, true, performance.now() - started);
    // The device was heard from: the commands queued for it go now.
    if (message.kind === "reported" && this.#committed.deviceCommands.length > 0)
      this.#commandDelivery().heard();
    const outcome: TurnOutcome =
      result === STALE
        ? { result: null, data: turn.data, duplicate: true, stale: true }
        : result === DUPLICATE
          ? { result: null, data: turn.data, duplicate: true }
          : { result, data: turn.data, duplicate: false };
    if (turn.records.length === 0) {
      // Nothing to write, but the answer may depend on state that is not persisted yet.
      const last = this.#pending ?? this.#inflight;
      if (last) {
        envelope.outcome = outcome;
        last.waiters.push(envelope);
      } else envelope.resolve(outcome);
      return;
    }
    envelope.outcome = outcome;
    const batch = this.#pending;
    if (batch) {
      for (const record of turn.records) batch.records.push(record);
      batch.waiters.push(envelope);
      batch.end = turn.data;
    } else {
      // A new batch takes over the turn's records (the turn is done with them).
      this.#pending = { start: this.#data, end: turn.data, records: turn.records, waiters: [envelope] };
    }
    this.#data = turn.data;
    this.#pump();
  }

  /** Refuses a turn that would leave reported, desired or state over its size limit (nothing of it is kept). */
  #checkBounds(message: TwinMessage, before: TwinData, after: TwinData): void {
    const limits = this.#host.twinLimits ?? DEFAULT_TWIN_LIMITS;
    if (before.reported !== after.reported) {
      this.#checkReported(message, before.reported, after.reported, limits.maxReportedBytes);
    }
    if (before.desired !== after.desired) {
      this.#checkSize(message, "desired", after.desired, limits.maxDesiredBytes, "limits.maxDesiredBytes");
    }
    if (before.state !== after.state) {
      this.#checkSize(message, "state", after.state, limits.maxStateBytes, "limits.maxStateBytes");
    }
  }

  /**
   * A report merges its patch into reported: the result is at most the old size plus the patch's
   * (JSON merge: replaced or deleted leaves only shrink it). Kept as an upper bound from report to
   * report, so a report does not serialise all of reported; measured exactly only when the bound
   * reaches the limit, or after anything else changed reported.
   */
  #checkReported(message: TwinMessage, old: JsonObject, next: JsonObject, max: number): void {
    if (message.kind === "reported" && this.#reportedBytesOf === old) {
      const bound = this.#reportedBytes + jsonSizeBound(message.patch) + 2;
      if (bound <= max) {
        this.#reportedBytesOf = next;
        this.#reportedBytes = bound;
        return;
      }
    }
    const size = this.#checkSize(message, "reported", next, max, "limits.maxReportedBytes");
    this.#reportedBytesOf = next;
    this.#reportedBytes = size;
  }

  /**
   * Refuses `value` over `max` bytes of JSON; returns its size, or an upper bound of it (see
   * `jsonSizeBound`) when that is within `max`, so a small value is not serialised to be measured.
   */
  #checkSize(message: TwinMessage, what: string, value: object, max: number, limit: string): number {
    const bound = jsonSizeBound(value, Number.POSITIVE_INFINITY);
    if (bound <= max) return bound;
    const size = Buffer.byteLength(JSON.stringify(value));
    if (size <= max) return size;
    const text = `${this.key}: ${what} would be ${size} bytes, over ${limit} (${max})`;
    const details = { limit, max, size };
    // Input that makes the twin too big is refused as invalid; a handler that does is a precondition.
    throw message.kind === "reported" || message.kind === "desired"
      ? new InvalidArgument(text, details)
      : new FailedPrecondition(text, details);
  }

  #describeFailure(message: TwinMessage, error: unknown): DoppelError {
    if (error instanceof DoppelError) return error;
    const what = message.kind === "command" ? `${this.key}.${message.name}` : `${this.key} ${message.kind}`;
    const text = error instanceof Error ? error.message : String(error);
    return new HandlerFailed(`${what} failed: ${text}`, { twin: this.key }, { cause: error });
  }

  /**
   * Runs the developer's handler for `turn.message`: its result, or a promise of it when the
   * handler returned one (a synchronous handler's turn needs no promise).
   */
  #handle(turn: Turn): Handled | Promise<Handled> {
    const twin = this.#twin;
    const message = turn.message;
    switch (message.kind) {
      case "command": {
        this.#checkVersion(message.expectedVersion);
        const handler = (twin as unknown as Record<string, (args: unknown) => unknown>)[message.name];
        if (typeof handler !== "function")
          throw new Internal(`${this.key}: no handler for command '${message.name}'`);
        const what = `${this.key}.${message.name}`;
        const returned = handler.call(twin, message.args);
        return isPromise(returned)
          ? Promise.resolve(returned).then((value) => toJsonResult(value, what))
          : toJsonResult(returned, what);
      }
      case "reported": {
        if (message.causation !== undefined && this.#data.recent.includes(message.causation))
          return DUPLICATE;
        // Checked on every delivery, whatever its message id and however it came back: a stamp
        // applied already is dropped; one below the high-water mark that was never applied (it
        // was overtaken: a redelivery after a crash) is applied late, but only for the fields
        // no newer report has set.
        const verdict = message.seq === undefined ? "new" : judgeStamp(this.#data, message.seq);
        if (verdict === "applied") return STALE;
        let patch = message.patch;
        if (verdict === "late") patch = lateLeavesDropped(patch, this.#data.reportedSeq, message.seq!);
        if (message.at !== undefined) patch = lateLeavesDropped(patch, this.#data.reportedAt, message.at);
        if (isEmpty(patch)) return isEmpty(message.patch) ? null : STALE;
        const data: Record<string, Json> = { type: BuiltIn.Reported, patch };
        if (message.seq !== undefined) data["seq"] = message.seq;
        if (message.at !== undefined) data["at"] = message.at;
        turn.record(BuiltIn.Reported, data);
        return afterHook(twin.onReported?.(patch), null);
      }
      case "desired": {
        this.#checkVersion(message.expectedVersion);
        turn.record(BuiltIn.Desired, { type: BuiltIn.Desired, patch: message.patch });
        return afterHook(twin.onDesired?.(message.patch), null);
      }
      case "reminder": {
        if (message.name === COMMANDS_REMINDER) {
          // The first queued command's expiry is due (the reminder index woke the twin).
          this.#commandDelivery().now();
          return null;
        }
        const reminder = turn.data.reminders.find((r) => r.name === message.name);
        if (!reminder || reminder.dueAt > this.#host.clock.now()) return false;
        turn.record(BuiltIn.ReminderFired, {
          type: BuiltIn.ReminderFired,
          name: reminder.name,
          dueAt: reminder.dueAt,
        });
        const fired: Reminder =
          reminder.every === undefined
            ? { name: reminder.name, payload: reminder.payload, dueAt: new Date(reminder.dueAt) }
            : {
                name: reminder.name,
                payload: reminder.payload,
                dueAt: new Date(reminder.dueAt),
                every: reminder.every,
              };
        return afterHook(twin.onReminder?.(fired), true);
      }
      case "device-command":
        return afterHook(settleQueuedCommands(turn, message, twin, this.key), null);
      case "activate":
        return afterHook(twin.onActivate?.(), null);
      case "passivate":
        return afterHook(twin.onPassivate?.(), null);
    }
  }

  #checkVersion(expected: number | undefined): void {
    if (expected !== undefined && expected !== this.#data.seq) {
      throw new VersionConflict(expected, this.#data.seq, this.key);
    }
  }

  #pump(): void {
    if (this.#inflight || !this.#pending) return;
    const batch = this.#pending;
    this.#pending = null;
    this.#inflight = batch;
    this.#host.committer.enqueue(this.#toCommit(batch), this);
  }

  // ---- CommitListener: the group committer's answer for `#inflight` (one commit at a time) ----

  /** The in-flight batch is persisted (called by the group committer only). */
  written(commit: TwinCommit): void {
    if (this.#inflight) this.#onCommitted(this.#inflight, commit);
  }

  /** The in-flight batch was refused or failed (called by the group committer only). */
  failed(_commit: TwinCommit, error: DoppelError): void {
    if (this.#inflight) this.#onFailed(this.#inflight, error);
  }

  #toCommit(batch: Batch): TwinCommit {
    const commit = new TurnCommit(
      this.#ref,
      this.shard,
      batch.start.seq,
      batch.records,
      this.#reminderChanges(batch.start, batch.end),
      batch.end,
    );
    // The twin's first batch creates it: on behalf of its first turn with a quota.
    const creating =
      batch.start.seq === 0
        ? batch.waiters.find((w) => w.message.maxTwins !== undefined)?.message
        : undefined;
    if (creating?.maxTwins !== undefined) {
      commit.creator = { principal: creating.principal ?? "anonymous", maxTwins: creating.maxTwins };
    }
    return commit;
  }

  /**
   * The reminder index entries a batch sets (new or moved) and clears; one shared empty change when
   * none. Besides the twin's reminders, the entry {@link COMMANDS_REMINDER} follows the first
   * expiry of its queued device commands.
   */
  #reminderChanges(start: TwinData, end: TwinData): TwinCommit["reminders"] {
    const before = start.reminders;
    const after = end.reminders;
    const queueChanged = start.deviceCommands !== end.deviceCommands;
    if (before === after && !queueChanged) return NO_REMINDER_CHANGES;
    const set: ReminderIndexEntry[] = [];
    const clear: string[] = [];
    if (before !== after) {
      for (const r of after) {
        const old = before.find((b) => b.name === r.name);
        if (!old || old.dueAt !== r.dueAt) set.push(this.#indexEntry(r.name, r.dueAt));
      }
      for (const b of before) if (!after.some((r) => r.name === b.name)) clear.push(b.name);
    }
    if (queueChanged) {
      const was = nextExpiry(start.deviceCommands);
      const next = nextExpiry(end.deviceCommands);
      if (next === undefined) {
        if (was !== undefined) clear.push(COMMANDS_REMINDER);
      } else if (next !== was) set.push(this.#indexEntry(COMMANDS_REMINDER, next));
    }
    return { set, clear };
  }

  /** The reminder index entries of `data`: its reminders, and its queued device commands' first expiry. */
  #indexEntries(data: TwinData): ReminderIndexEntry[] {
    const entries = data.reminders.map((r) => this.#indexEntry(r.name, r.dueAt));
    const expiry = nextExpiry(data.deviceCommands);
    if (expiry !== undefined) entries.push(this.#indexEntry(COMMANDS_REMINDER, expiry));
    return entries;
  }

  #indexEntry(name: string, dueAt: number): ReminderIndexEntry {
    return { shard: this.shard, type: this.type.name, id: this.id, name, dueAt };
  }

  #onCommitted(batch: Batch, commit: TwinCommit): void {
    this.#inflight = null;
    this.#committed = batch.end;
    for (const envelope of batch.waiters) envelope.resolve(envelope.outcome!);
    this.#host.committed(this, commit, commit.reminders.set);
    if (batch.start.deviceCommands !== batch.end.deviceCommands) this.#queueCommitted(batch.records);
    if (batch.end.seq - this.#snapshotSeq >= this.type.snapshotEvery) void this.#snapshot(batch.end);
    this.#pump();
    this.#notifySettled();
  }

  /** Counts a persisted batch's queue events, and keeps delivery going while commands are queued. */
  #queueCommitted(records: readonly EventRecord[]): void {
    const counts = this.#host.queuedCommandCounts;
    if (counts) {
      for (const record of records) {
        if (record.type === CommandEvent.Queued) counts.queued++;
        else if (record.type === CommandEvent.Delivered) counts.delivered++;
        else if (record.type === CommandEvent.Expired) counts.expired++;
      }
    }
    if (this.#committed.deviceCommands.length > 0 && this.#status === "active")
      this.#commandDelivery().ensure();
  }

  #commandDelivery(): CommandDelivery {
    this.#delivery ??= new CommandDelivery({
      clock: this.#host.clock,
      queue: () => this.#committed.deviceCommands,
      send: (command) => {
        const send = this.#host.sendToDevice;
        if (!send) return Promise.reject(new Unavailable(`${this.key}: this node has no device transport`));
        return send.call(this.#host, this.ref, command.command, command.args, command.timeoutMs, command.id);
      },
      settle: (message) =>
        this.#host.dispatchTo ? this.#host.dispatchTo(this, message) : this.enqueue(message),
      warn: (message, error) => this.#host.warn(`${this.key}: ${message}`, error),
      ...present({ counts: this.#host.queuedCommandCounts }),
    });
    return this.#delivery;
  }

  #onFailed(batch: Batch, error: DoppelError): void {
    this.#inflight = null;
    const waiters = [...batch.waiters, ...(this.#pending?.waiters ?? [])];
    this.#pending = null;
    this.#data = this.#committed;
    // Another writer's commit, or this one's if its outcome is unknown, may have set index entries.
    if (error.code !== ErrorCode.QuotaExceeded) this.#host.indexMayHaveChanged?.(this);
    if (error.code === ErrorCode.ConcurrencyConflict) {
      // Every store appends only at the head of the log, atomically, and refuses an older lease
      // epoch (the fence): a conflict means another writer appended first, so this node's copy is
      // behind, not forked. Reload before the next turn; the callers may retry. (A fork left by
      // older data is found by the reload's read and quarantines the twin.)
      this.#host.observer?.conflicted();
      this.#needsReload = true;
      const failure = new Unavailable(
        `${this.key}: another writer appended at version ${batch.start.seq + 1} first; reloading, retry: ${error.message}`,
        { reason: "conflict" },
      );
      for (const envelope of waiters) envelope.reject(failure);
    } else if (error.code === ErrorCode.QuotaExceeded) {
      // The creation was refused and nothing written: the store holds what `#committed` does, so
      // no reload. The turns that ran on the refused creation fail with it.
      this.#host.observer?.overQuota();
      for (const envelope of waiters) envelope.reject(error);
    } else {
      this.#needsReload = true;
      const failure = error.retryable
        ? error
        : new Unavailable(`${this.key}: write failed: ${error.message}`);
      for (const envelope of waiters) envelope.reject(failure);
    }
    this.#notifySettled();
  }

  async #quarantine(reason: string): Promise<void> {
    this.#host.observer?.quarantined();
    this.#status = "gone";
    this.#delivery?.stop();
    const failure = new Quarantined(`${this.key} is quarantined: ${reason}`, { reason });
    for (const envelope of this.#mailbox?.splice(0) ?? []) envelope.reject(failure);
    this.#host.discard(this);
    try {
      await this.#host.store.quarantine(this.ref, reason);
    } catch (error) {
      this.#host.warn(`${this.key}: could not record quarantine`, error);
    }
  }

  async #snapshot(data: TwinData): Promise<void> {
    this.#snapshotSeq = data.seq;
    try {
      await this.#host.store.writeSnapshot(this.ref, toSnapshot(data));
    } catch (error) {
      this.#host.warn(`${this.key}: snapshot at version ${data.seq} not written`, error);
    }
  }

  #whenSettled(): Promise<void> {
    if (!this.#inflight && !this.#pending) return Promise.resolve();
    return new Promise((resolve) => (this.#settledWaiters ??= []).push(resolve));
  }

  #notifySettled(): void {
    if (this.#inflight || this.#pending || !this.#settledWaiters) return;
    const waiters = this.#settledWaiters;
    this.#settledWaiters = null;
    for (const resolve of waiters) resolve();
  }

  /**
   * Leaves memory: runs `onPassivate`, waits for every write, snapshots if behind, and marks the
   * activation gone. Returns false (and does nothing) if the twin is busy or not active.
   */
  passivate(): boolean {
    if (this.#status !== "active" || this.busy) return false;
    this.#status = "passivating";
    this.#gone = this.#passivate();
    return true;
  }

  async #passivate(): Promise<void> {
    if (this.#twin.onPassivate) {
      await new Promise<void>((resolve) => {
        (this.#mailbox ??= []).push(
          new Envelope(
            { kind: "passivate" },
            () => resolve(),
            (error) => {
              this.#host.warn(`${this.key}: onPassivate failed`, error);
              resolve();
            },
          ),
        );
        void this.#run();
      });
    }
    await this.#whenSettled();
    this.#delivery?.stop();
    if (this.#committed.seq > this.#snapshotSeq && !this.#needsReload) await this.#snapshot(this.#committed);
    this.#status = "gone";
    this.#host.observer?.passivated();
  }

  // ---- TwinBinding: what the developer's twin sees through `this` ----

  get ref(): TwinRef {
    return this.#ref;
  }

  #current(): TwinData {
    return this.#turn ? this.#turn.data : this.#data;
  }

  get state(): object {
    return this.#current().state;
  }

  get reported(): JsonObject {
    return this.#current().reported;
  }

  get desired(): JsonObject {
    return this.#current().desired;
  }

  get delta(): JsonObject {
    const data = this.#current();
    return computeDelta(data.desired, data.reported);
  }

  get version(): number {
    return this.#current().seq;
  }

  now(): number {
    return this.#host.clock.now();
  }

  #inTurn(what: string): Turn {
    if (!this.#turn) {
      throw new FailedPrecondition(
        `${this.key}: ${what}() can only be called while the twin handles a message`,
      );
    }
    return this.#turn;
  }

  emit(event: TwinEvent): void {
    this.#inTurn("emit").emit(event);
  }

  setDesired(patch: JsonObject): void {
    this.#inTurn("setDesired").setDesired(patch);
  }

  schedule(name: string, when: When, payload: JsonObject, options: ScheduleOptions): void {
    this.#inTurn("schedule").schedule(name, when, payload, options);
  }

  cancel(name: string): void {
    this.#inTurn("cancel").cancel(name);
  }

  reminders(): readonly Reminder[] {
    return this.#current().reminders.map((r) =>
      r.every === undefined
        ? { name: r.name, payload: r.payload, dueAt: new Date(r.dueAt) }
        : { name: r.name, payload: r.payload, dueAt: new Date(r.dueAt), every: r.every },
    );
  }

  async call(target: TwinRef | string, command: string, args: JsonObject): Promise<unknown> {
    const turn = this.#inTurn("call");
    const ref = typeof target === "string" ? parseRef(target) : parseRef(refKey(target));
    const message = turn.message;
    const upstream = message.kind === "command" ? message.chain : NO_CHAIN;
    const chain = [...upstream, this.key];
    const targetKey = refKey(ref);
    if (chain.includes(targetKey)) throw new CallCycle([...chain, targetKey]);
    if (typeof command !== "string" || command.length === 0)
      throw new InvalidArgument("call(): command name is empty");
    const timeout = this.#host.clock.now() + this.#host.callTimeoutMs;
    const deadline = message.deadline === undefined ? timeout : Math.min(message.deadline, timeout);
    // The call acts for whoever asked this turn: its events carry that principal, and a twin it
    // creates counts against that principal's quota (a twin cannot launder a key's creations).
    return this.#host.callTwin(ref, command, args, {
      chain,
      deadline,
      ...present({ principal: message.principal, maxTwins: message.maxTwins }),
    });
  }

  async sendToDevice(
    command: string,
    args: JsonObject,
    options: DeviceCommandOptions | QueuedDeviceCommandOptions,
  ): Promise<Json | DeviceCommandSent> {
    const turn = this.#inTurn("sendToDevice");
    if (typeof command !== "string" || command.length === 0)
      throw new InvalidArgument("sendToDevice(): command name is empty");
    const send = this.#host.sendToDevice;
    if (!send) throw new Unavailable(`${this.key}: this node has no device transport`);
    const now = this.#host.clock.now();
    const wait =
      options.timeout === undefined
        ? (this.#host.deviceCommandTimeoutMs ?? 5000)
        : toMillis(options.timeout, "sendToDevice() timeout");
    const deadline =
      turn.message.deadline === undefined ? now + wait : Math.min(turn.message.deadline, now + wait);
    if (deadline <= now)
      throw new DeadlineExceeded(`${this.key}: the caller's deadline passed before the device command`);
    if (!("queueFor" in options) || options.queueFor === undefined) {
      return send.call(this.#host, this.ref, command, args, deadline - now);
    }
    return this.#sendOrQueue(
      turn,
      send,
      command,
      requireJsonObject(args, "sendToDevice() args"),
      wait,
      options.queueFor,
    );
  }

  /**
   * `sendToDevice` with `queueFor`: sends at once when nothing is queued before it; queues it (an
   * event of this turn) when commands are queued already or the device is unreachable.
   */
  async #sendOrQueue(
    turn: Turn,
    send: NonNullable<ActivationHost["sendToDevice"]>,
    command: string,
    args: JsonObject,
    timeoutMs: number,
    queueFor: QueuedDeviceCommandOptions["queueFor"],
  ): Promise<DeviceCommandSent> {
    const ttl = toMillis(queueFor, "sendToDevice() queueFor");
    if (!(ttl > 0) || ttl > MAX_QUEUE_FOR_MS) {
      throw new InvalidArgument(
        `sendToDevice(): queueFor must be more than 0 and at most ${MAX_QUEUE_FOR_MS} ms (30 days), got ${ttl} ms`,
      );
    }
    const id = randomUUID();
    if (turn.data.deviceCommands.length === 0) {
      try {
        const result = await send.call(this.#host, this.ref, command, args, timeoutMs, id);
        return { status: "answered", id, result };
      } catch (error) {
        if (!isUnreachable(error)) throw error;
      }
    }
    const max = this.#host.maxQueuedDeviceCommands ?? DEFAULT_MAX_QUEUED_COMMANDS;
    const queued = turn.data.deviceCommands.length;
    if (queued >= max) {
      throw new ResourceExhausted(
        `${this.key}: ${queued} device commands are queued for the device already (limits.maxQueuedDeviceCommands = ${max}); '${command}' is not queued`,
        { limit: "limits.maxQueuedDeviceCommands", max, queued },
      );
    }
    const expiresAt = this.#host.clock.now() + ttl;
    turn.record(CommandEvent.Queued, {
      type: CommandEvent.Queued,
      id,
      command,
      args,
      expiresAt,
      timeoutMs,
    });
    return { status: "queued", id, expiresAt: new Date(expiresAt) };
  }
}

/** What a handler's turn answers: its result, or that the message was a duplicate or stale. */
type Handled = Json | typeof DUPLICATE | typeof STALE;

function isPromise(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" && value !== null && typeof (value as PromiseLike<unknown>).then === "function"
  );
}

/** `result`, once the hook's returned promise (if it returned one) has settled. */
function afterHook(returned: unknown, result: Handled): Handled | Promise<Handled> {
  return isPromise(returned) ? Promise.resolve(returned).then(() => result) : result;
}

function isEmpty(object: JsonObject): boolean {
  for (const _ in object) return false;
  return true;
}

function toJsonResult(value: unknown, what: string): Json {
  if (value === undefined) return null;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? null : (JSON.parse(text) as Json);
  } catch (error) {
    throw new HandlerFailed(`${what} returned a value that is not JSON: ${(error as Error).message}`);
  }
}
