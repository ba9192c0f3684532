/**
 * What can arrive in a twin's mailbox, and what a turn answers. Input is validated before it is
 * queued (ids, schemas, sizes), so a turn only ever sees well-formed messages.
 */
import type { Json, JsonObject } from "../core/json.ts";
import type { CommandAnswer } from "./queued-commands.ts";
import type { TwinData } from "./twin-data.ts";

interface Common {
  /** Id of the message that caused this one (device message id, request id). */
  readonly causation?: string;
  /** Who asked (`principalLabel`): recorded on the turn's events (the audit trail). */
  readonly principal?: string;
  /** The principal's twin quota: a turn that creates the twin counts against it (see `TwinCommit.creator`). */
  readonly maxTwins?: number;
  /** Epoch ms after which the caller no longer waits; a message still queued then is dropped with an error. */
  readonly deadline?: number;
}

/** A named command with validated arguments. */
export interface CommandMessage extends Common {
  readonly kind: "command";
  readonly name: string;
  readonly args: unknown;
  readonly expectedVersion?: number;
  /** Keys of the twins waiting on this call, outermost first (for cycle detection). */
  readonly chain: readonly string[];
}

/** A reported-state patch from the device. */
export interface ReportedMessage extends Common {
  readonly kind: "reported";
  readonly patch: JsonObject;
  /** The device's sequence number: dropped unless above the twin's high-water mark. */
  readonly seq?: number;
  /** The device's time of the report: leaves the twin holds with a newer time are not changed. */
  readonly at?: number;
}

/** A desired-state patch from a service. */
export interface DesiredMessage extends Common {
  readonly kind: "desired";
  readonly patch: JsonObject;
  readonly expectedVersion?: number;
}

/** A reminder that fell due. */
export interface ReminderMessage extends Common {
  readonly kind: "reminder";
  readonly name: string;
  readonly dueAt: number;
}

/**
 * A queued device command's outcome, queued by the twin's own delivery (`command-delivery.ts`):
 * the device's `answer` to command `id`, or (no `id`) the expiry of every queued command whose
 * time has passed.
 */
export interface DeviceCommandMessage extends Common {
  readonly kind: "device-command";
  readonly id?: string;
  readonly answer?: CommandAnswer;
  /** Record the outcome without calling `onDeviceCommandResult` (it failed on this outcome once). */
  readonly quiet?: boolean;
}

/** Lifecycle turns, queued by the runtime itself. */
export interface LifecycleMessage extends Common {
  readonly kind: "activate" | "passivate";
}

export type TwinMessage =
  | CommandMessage
  | ReportedMessage
  | DesiredMessage
  | ReminderMessage
  | DeviceCommandMessage
  | LifecycleMessage;

/**
 * A twin-to-twin call's context: the twins waiting upstream (cycle detection), when the caller
 * stops waiting, and the principal (with its twin quota) of the turn that makes the call.
 */
export interface TwinCall {
  readonly chain: readonly string[];
  readonly deadline: number;
  readonly principal?: string;
  readonly maxTwins?: number;
}

/** The answer to one message, given once its effects are persisted. */
export interface TurnOutcome {
  /** The handler's return value (commands), or null. */
  readonly result: Json;
  /** The twin right after this turn. */
  readonly data: TwinData;
  /** True when the message was a duplicate of one already applied (nothing was done). */
  readonly duplicate: boolean;
  /** True when a stamped report was dropped as stale (at or below the high-water mark, or every field late). */
  readonly stale?: boolean;
}
