/**
 * Delivery of one twin's queued device commands (what they are: `queued-commands.ts`). An
 * activation with a non-empty queue has one; it sends the queue's head to the device whenever the
 * device is heard from (a report reached the twin) and, while the twin is resident, on a retry
 * schedule (1 s, doubling to 1 min; reset by every answer and every report). Expiry needs no
 * resident twin: the queue's first expiry is in the reminder index (`$commands`), which wakes the
 * twin then.
 *
 * Invariants:
 * - at most one command of a twin is on its way to the device at a time (`#busy`), and commands
 *   go in queue order: the next is sent only after the previous one's outcome is persisted;
 * - only persisted commands are sent (the queue read is the activation's committed one), each
 *   time with its own id, so a device can drop a resend it has already run;
 * - a command leaves the queue only by a turn that records its outcome (`$command.delivered`,
 *   `$command.expired`); if the twin's `onDeviceCommandResult` throws on it, the outcome is
 *   recorded again without the handler (`quiet`), so a failing handler cannot keep a command queued;
 * - a failure that is no answer of the device's (unreachable, or the node stopping or unable to
 *   send: `isUnreachable`) records nothing: the command stays queued. While the node stops it is
 *   not retried (the twin's next activation sends it, after a restart or on the next owner).
 */
import type { Clock, TimerHandle } from "../core/clock.ts";
import { DoppelError } from "../core/errors.ts";
import type { Json } from "../core/json.ts";
import type { QueuedCommand } from "../core/records.ts";
import type { DeviceCommandResult, Twin, TwinEvent } from "../core/twin.ts";
import type { DeviceCommandMessage } from "./messages.ts";
import {
  type CommandAnswer,
  CommandEvent,
  deliveredEvent,
  expiredError,
  isNodeStopping,
  isUnreachable,
} from "./queued-commands.ts";
import type { Turn } from "./turn.ts";

/** First retry of an unreachable device, ms (doubles up to {@link MAX_RETRY_MS}). */
export const FIRST_RETRY_MS = 1000;
/** Longest wait between two attempts while the twin is resident, ms. */
export const MAX_RETRY_MS = 60_000;

/** What the queue did, on this node (metrics: `doppel_device_commands_total{outcome}`). */
export interface QueuedCommandCounts {
  /** Commands queued (the device was unreachable when the twin sent them). */
  queued: number;
  /** Queued commands the device answered (with a result or an error). */
  delivered: number;
  /** Queued commands that expired unsent. */
  expired: number;
  /** Attempts that found the device still unreachable. */
  retried: number;
}

/** A fresh set of {@link QueuedCommandCounts}. */
export function queuedCommandCounts(): QueuedCommandCounts {
  return { queued: 0, delivered: 0, expired: 0, retried: 0 };
}

/** What delivery needs from its activation. */
export interface DeliveryHost {
  readonly clock: Clock;
  /** The twin's persisted queue, oldest first. */
  queue(): readonly QueuedCommand[];
  /** Sends `command` to the device (with its own id) and returns the answer. */
  send(command: QueuedCommand): Promise<Json>;
  /** Runs `message` as a turn of the twin; resolves once persisted. */
  settle(message: DeviceCommandMessage): Promise<unknown>;
  readonly counts?: QueuedCommandCounts;
  warn(message: string, error: unknown): void;
}

/** The delivery loop of one activation (see the module comment). */
export class CommandDelivery {
  #busy = false;
  #stopped = false;
  #timer: TimerHandle | undefined;
  #retryMs = FIRST_RETRY_MS;

  constructor(private readonly host: DeliveryHost) {}

  /** The device was heard from: try at once, with the retry schedule reset. */
  heard(): void {
    this.#retryMs = FIRST_RETRY_MS;
    this.now();
  }

  /** Tries at once (expiring what is due first), unless a delivery is under way. */
  now(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    void this.#deliver();
  }

  /** Makes sure a try is scheduled while commands are queued (after a commit, or on activation). */
  ensure(): void {
    if (this.#busy || this.#timer || this.#stopped || this.host.queue().length === 0) return;
    this.#retryLater();
  }

  /** Stops retrying (the twin leaves memory). A send under way finishes and its outcome is recorded. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #retryLater(): void {
    if (this.#stopped) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
    this.#timer = this.host.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#deliver();
    }, wait);
  }

  async #deliver(): Promise<void> {
    if (this.#busy || this.#stopped) return;
    this.#busy = true;
    let retry = false;
    try {
      for (;;) {
        const queue = this.host.queue();
        const head = queue[0];
        if (!head || this.#stopped) return;
        const now = this.host.clock.now();
        if (queue.some((c) => c.expiresAt <= now)) {
          if (!(await this.#settle({ kind: "device-command" }))) return void (retry = true);
          continue;
        }
        let answer: CommandAnswer;
        try {
          answer = { result: await this.host.send(head) };
        } catch (error) {
          // The node is stopping: kept queued, not retried here, not counted as a retry.
          if (isNodeStopping(error)) return;
          if (isUnreachable(error)) {
            if (this.host.counts) this.host.counts.retried++;
            return void (retry = true);
          }
          answer = { error: DoppelError.from(error) };
        }
        if (!(await this.#settle({ kind: "device-command", id: head.id, answer })))
          return void (retry = true);
        this.#retryMs = FIRST_RETRY_MS;
      }
    } finally {
      this.#busy = false;
      if (retry) this.#retryLater();
    }
  }

  /** Records an outcome as a turn; once more without the twin's handler if that turn failed. */
  async #settle(message: DeviceCommandMessage): Promise<boolean> {
    try {
      await this.host.settle(message);
      return true;
    } catch (first) {
      try {
        await this.host.settle({ ...message, quiet: true });
        this.host.warn("onDeviceCommandResult failed; the outcome is recorded without it", first);
        return true;
      } catch (error) {
        this.host.warn("a queued device command's outcome was not recorded; retrying", error);
        return false;
      }
    }
  }
}

/**
 * The turn of a {@link DeviceCommandMessage}: records the outcome of the command it names (if it
 * is still queued), or the expiry of every command whose time has passed, and hands each outcome
 * to the twin's `onDeviceCommandResult` (unless `quiet`). Returns the handler's promise, if any.
 */
export function settleQueuedCommands(
  turn: Turn,
  message: DeviceCommandMessage,
  twin: Twin<object, TwinEvent, object>,
  key: string,
): void | Promise<void> {
  const results: DeviceCommandResult[] = [];
  const queue = turn.data.deviceCommands;
  if (message.id !== undefined && message.answer) {
    const command = queue.find((c) => c.id === message.id);
    if (!command) return; // settled already (a late second answer, or an attempt from a former owner)
    const answer = message.answer;
    turn.record(CommandEvent.Delivered, deliveredEvent(command, answer));
    results.push(
      "error" in answer
        ? { ...common(command), outcome: "failed", error: answer.error }
        : { ...common(command), outcome: "answered", result: answer.result },
    );
  } else {
    for (const command of queue) {
      if (command.expiresAt > turn.now) continue;
      turn.record(CommandEvent.Expired, {
        type: CommandEvent.Expired,
        id: command.id,
        command: command.command,
      });
      results.push({ ...common(command), outcome: "expired", error: expiredError(key, command) });
    }
  }
  const hook = twin.onDeviceCommandResult;
  if (message.quiet || !hook) return;
  return inOrder(results, (result) => hook.call(twin, result));
}

function common(command: QueuedCommand) {
  return {
    id: command.id,
    command: command.command,
    args: command.args,
    queuedAt: new Date(command.queuedAt),
  };
}

/** Calls `run` on each item in turn, waiting for any promise it returns before the next. */
function inOrder<T>(items: readonly T[], run: (item: T) => void | Promise<void>): void | Promise<void> {
  for (let i = 0; i < items.length; i++) {
    const returned = run(items[i]!);
    if (returned && typeof returned.then === "function") {
      return returned.then(() => inOrder(items.slice(i + 1), run));
    }
  }
}
