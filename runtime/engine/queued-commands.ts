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
 * True when `error` says the device could not be reached (nothing listens, or no answer in time):
 * a queued command stays queued and is tried again. Anything else is the device's own answer.
 */
export function isUnreachable(error: unknown): boolean {
  if (!(error instanceof DoppelError)) return false;
  const reason = error.details?.["reason"];
  return (
    (error.code === ErrorCode.Unavailable && reason === "offline") ||
    (error.code === ErrorCode.DeadlineExceeded && reason === "no-answer")
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
