/**
 * Queued device commands as data: what `sendToDevice(..., { queueFor })` keeps in a twin's
 * persisted state for a device it could not reach, and the built-in events that change it.
 *
 * Why in the twin's own state (like reminders) and not in a separate store or a JetStream stream:
 * the queue is then committed with the turn that queued the command (a handler that throws
 * queues nothing), it has exactly one writer (the twin's owner, fenced by its lease epoch like
 * every event), it survives passivation, a node crash and failover by replay, and its history
 * (queued, delivered, expired) is the twin's own history.
 *
 * Events (reserved `$` types): `$command.queued` `{ id, command, args, expiresAt, timeoutMs }`,
 * `$command.delivered` `{ id, command, result }` or `{ id, command, error }` (the device's
 * answer), `$command.expired` `{ id, command }`. Each of the last two removes its command.
 */
import { DeadlineExceeded, DoppelError, ErrorCode } from "../core/errors.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";
import type { EventRecord, QueuedCommand } from "../core/records.ts";

/** The built-in event types of the queue. */
export const CommandEvent = {
  Queued: "$command.queued",
  Delivered: "$command.delivered",
  Expired: "$command.expired",
} as const;

/**
 * The name of the reminder index entry that wakes a twin when its oldest-expiring queued command
 * expires (reserved: reminder names a twin sets cannot start with `$`). It is derived from the
 * queue, never part of the twin's own reminders.
 */
export const COMMANDS_REMINDER = "$commands";

/** Default most commands queued per twin (`limits.maxQueuedDeviceCommands`). */
export const DEFAULT_MAX_QUEUED_COMMANDS = 100;

/** Longest `queueFor`. */
export const MAX_QUEUE_FOR_MS = 30 * 24 * 60 * 60 * 1000;

/** The empty queue (shared). */
export const NO_COMMANDS: readonly QueuedCommand[] = Object.freeze([]);

/** Advances a queue by one of its events (see the module comment). */
export function foldCommands(queue: readonly QueuedCommand[], record: EventRecord): readonly QueuedCommand[] {
  const d = record.data;
  const id = String(d["id"]);
  if (record.type === CommandEvent.Queued) {
    const args = isJsonObject(d["args"]) ? d["args"] : {};
    return [
      ...queue,
      {
        id,
        command: String(d["command"]),
        args,
        queuedAt: record.at,
        expiresAt: Number(d["expiresAt"]),
        timeoutMs: Number(d["timeoutMs"]),
      },
    ];
  }
  const rest = queue.filter((c) => c.id !== id);
  return rest.length ? rest : NO_COMMANDS;
}

/** When the first queued command expires (undefined: none queued). */
export function nextExpiry(queue: readonly QueuedCommand[]): number | undefined {
  let first: number | undefined;
  for (const c of queue) if (first === undefined || c.expiresAt < first) first = c.expiresAt;
  return first;
}

/**
 * `details.reason` of a device command's failure that is no answer of the device's: its sender
 * (`runtime/devices/egress/device-commands.ts`) tags it at the source, so a queued command stays
 * queued after it (see {@link isUnreachable}).
 */
export const UnreachableReason = {
  /** Nothing listens on the device's `cmd` subject. */
  Offline: "offline",
  /** The device did not answer within the command's timeout. */
  NoAnswer: "no-answer",
  /** The node is stopping: the command was not sent, or its answer can no longer be heard. */
  Stopping: "stopping",
  /** The node could not send the command at all: its own connection is closed, draining or gone. */
  NotSent: "not-sent",
} as const;

/**
 * True when `error` says the command did not reach the device, or its answer did not reach the
 * node (nothing listens, no answer in time, the node is stopping or could not send): a queued
 * command stays queued and is tried again. Anything else is the device's own answer.
 */
export function isUnreachable(error: unknown): boolean {
  if (!(error instanceof DoppelError)) return false;
  const reason = error.details?.["reason"];
  return (
    (error.code === ErrorCode.Unavailable &&
      (reason === UnreachableReason.Offline ||
        reason === UnreachableReason.Stopping ||
        reason === UnreachableReason.NotSent)) ||
    (error.code === ErrorCode.DeadlineExceeded && reason === UnreachableReason.NoAnswer)
  );
}

/** True when `error` says the node is stopping: a queued command is tried again by the twin's next activation. */
export function isNodeStopping(error: unknown): error is DoppelError {
  return (
    error instanceof DoppelError &&
    error.code === ErrorCode.Unavailable &&
    error.details?.["reason"] === UnreachableReason.Stopping
  );
}

/** The error an expired command's outcome carries. */
export function expiredError(ref: string, command: QueuedCommand): DeadlineExceeded {
  return new DeadlineExceeded(
    `${ref}: device command '${command.command}' (${command.id}) expired at ${new Date(command.expiresAt).toISOString()} before the device was reached`,
    { reason: "expired", id: command.id },
  );
}

/** The device's answer to a queued command: its result, or the error it answered with. */
export type CommandAnswer = { readonly result: JsonObject[string] } | { readonly error: DoppelError };

/** The `$command.delivered` event of `command` answered with `answer`. */
export function deliveredEvent(command: QueuedCommand, answer: CommandAnswer): JsonObject {
  return "error" in answer
    ? {
        type: CommandEvent.Delivered,
        id: command.id,
        command: command.command,
        error: answer.error.toWire() as unknown as JsonObject,
      }
    : { type: CommandEvent.Delivered, id: command.id, command: command.command, result: answer.result };
}
