/**
 * The twin authoring API: the class a developer extends to describe one kind of device.
 *
 * A twin is event sourced. Handlers (`onReported`, commands, `onReminder`, ...) never mutate state:
 * they `emit` events, and the pure `apply(state, event)` folds each event into the next state, at
 * once (so a handler sees its own events) and again on every replay. A turn's events are persisted
 * together after the handler returns; if the handler throws, none of them is kept.
 *
 * ```ts
 * export class Lamp extends Twin<LampState, LampEvent> {
 *   static readonly type = "lamp";
 *   static readonly commands = { dim: z.object({ level: z.number().min(0).max(100) }) };
 *   initialState() { return { level: 0 }; }
 *   apply(state: LampState, event: LampEvent) { return { level: event.level }; }
 *   dim({ level }: { level: number }) { this.emit({ type: "dimmed", level }); return { level }; }
 * }
 * ```
 */
import type { z } from "zod";
import type { Duration } from "./duration.ts";
import type { EdgeOptions } from "./edge-telemetry.ts";
import type { DoppelError } from "./errors.ts";
import type { TwinRef } from "./ids.ts";
import type { Json, JsonObject } from "./json.ts";

/** Every event a twin emits is a JSON object with a `type`. Types starting with `$` are reserved. */
export interface TwinEvent {
  readonly type: string;
}

/** When a reminder is due: at a point in time, or after a delay from now. */
export type When = { readonly at: Date | number } | { readonly after: Duration };

/** Options of {@link Twin.schedule}. */
export interface ScheduleOptions {
  /** Fire again every `every` after each firing, until cancelled. */
  readonly every?: Duration;
}

/** A durable reminder, as handed to {@link Twin.onReminder}. */
export interface Reminder {
  readonly name: string;
  readonly payload: JsonObject;
  /** When it was due (it fires at or shortly after this). */
  readonly dueAt: Date;
  /** Repeat interval in milliseconds, for repeating reminders. */
  readonly every?: number;
}

/** Per-type tuning, as `static readonly options` on a twin class. Unset fields use the node's defaults. */
export interface TwinOptions {
  /** Write a snapshot after this many events (activation = snapshot + replay of later events). */
  readonly snapshotEvery?: number;
  /** Passivate the twin after it has been idle this long. */
  readonly idleTimeout?: Duration;
  /**
   * What a reported patch's keys unknown to the `reported` schema do: `refuse` (default: the patch
   * is refused with `InvalidArgument` naming them) or `strip` (they are dropped, the rest applied).
   * A schema that keeps unknown keys (`z.looseObject`) stores them either way.
   */
  readonly unknownReportedKeys?: "refuse" | "strip";
}

/** The runtime's side of a twin instance. Implemented by the activation; not for twin authors. */
export interface TwinBinding {
  readonly ref: TwinRef;
  readonly state: object;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  readonly delta: JsonObject;
  readonly version: number;
  now(): number;
  emit(event: TwinEvent): void;
  setDesired(patch: JsonObject): void;
  schedule(name: string, when: When, payload: JsonObject, options: ScheduleOptions): void;
  cancel(name: string): void;
  reminders(): readonly Reminder[];
  call(target: TwinRef | string, command: string, args: JsonObject): Promise<unknown>;
  sendToDevice(
    command: string,
    args: JsonObject,
    options: DeviceCommandOptions | QueuedDeviceCommandOptions,
  ): Promise<Json | DeviceCommandSent>;
}

/** Options of {@link Twin.sendToDevice}. */
export interface DeviceCommandOptions {
  /** How long to wait for the device's answer (default: the node's `limits.deviceCommandTimeout`, 5 s). */
  readonly timeout?: Duration;
}

/** Options of {@link Twin.sendToDevice} for a command that waits for an unreachable device. */
export interface QueuedDeviceCommandOptions extends DeviceCommandOptions {
  /**
   * Keep the command for the device this long if it cannot be reached now (nothing listens, or no
   * answer within `timeout`): it is queued in the twin's persisted state and sent when the device
   * is next heard from (and retried meanwhile), in order, until it expires. At most 30 days.
   */
  readonly queueFor: Duration;
}

/** What {@link Twin.sendToDevice} with `queueFor` resolves to. */
export type DeviceCommandSent =
  /** The device was reachable and answered at once. */
  | { readonly status: "answered"; readonly id: string; readonly result: Json }
  /**
   * The device was unreachable: the command is queued (persisted with this turn) and its outcome
   * comes later to {@link Twin.onDeviceCommandResult}.
   */
  | { readonly status: "queued"; readonly id: string; readonly expiresAt: Date };

/** The outcome of a queued device command, as handed to {@link Twin.onDeviceCommandResult}. */
export interface DeviceCommandResult {
  /** The command's id (as returned when it was queued, and as the device saw it). */
  readonly id: string;
  readonly command: string;
  readonly args: JsonObject;
  readonly queuedAt: Date;
  /**
   * `answered`: the device answered with `result`; `failed`: the device answered with `error`;
   * `expired`: the device was not reached before the command's `queueFor` ran out (`error` is
   * `DEADLINE_EXCEEDED` with `details.reason` `expired`).
   */
  readonly outcome: "answered" | "failed" | "expired";
  readonly result?: Json;
  readonly error?: DoppelError;
}

let bind: (twin: Twin<object, TwinEvent, object>, binding: TwinBinding) => void;

/** Attaches a twin instance to its activation. Runtime-internal. */
export function bindTwin(twin: Twin<object, TwinEvent, object>, binding: TwinBinding): void {
  bind(twin, binding);
}

/**
 * Base class of every twin.
 *
 * @typeParam S the twin's own state (plain JSON-serialisable data)
 * @typeParam E the union of the twin's events
 * @typeParam R the shape of the device's reported state (and of desired state)
 */
export abstract class Twin<
  S extends object = JsonObject,
  E extends TwinEvent = TwinEvent,
  R extends object = JsonObject,
> {
  #binding!: TwinBinding;

  static {
    bind = (twin, binding) => {
      twin.#binding = binding;
    };
  }

  /** The twin's reference (`type` and `id`). */
  get ref(): TwinRef {
    return this.#binding.ref;
  }

  /** The twin's id within its type. */
  get id(): string {
    return this.#binding.ref.id;
  }

  /** The twin's current state, including events emitted earlier in this turn. Read-only. */
  get state(): Readonly<S> {
    return this.#binding.state as S;
  }

  /** What the device last reported (merged patches). */
  get reported(): Readonly<Partial<R>> {
    return this.#binding.reported as Partial<R>;
  }

  /** What services want the device to change to, minus what the device already reports. */
  get desired(): Readonly<Partial<R>> {
    return this.#binding.desired as Partial<R>;
  }

  /** The desired leaves that differ from reported. */
  get delta(): Readonly<Partial<R>> {
    return this.#binding.delta as Partial<R>;
  }

  /** The number of events in the twin's history: grows by one per persisted event. */
  get version(): number {
    return this.#binding.version;
  }

  /** The node's clock (a fake clock in tests), as a Date. Use it instead of `new Date()`. */
  get now(): Date {
    return new Date(this.#binding.now());
  }

  /** The state of a twin that has never seen an event. */
  abstract initialState(): S;

  /** Folds one event into the state. Must be pure: return a new state, never modify `state`. */
  abstract apply(state: S, event: E): S;

  /** Called after a device reported `patch` (already merged into {@link reported}). */
  onReported?(patch: Partial<R>): void | Promise<void>;

  /** Called after desired state changed by `patch` (already merged into {@link desired}). */
  onDesired?(patch: Partial<R>): void | Promise<void>;

  /** Called when a reminder set with {@link schedule} is due; runs even after passivation or restart. */
  onReminder?(reminder: Reminder): void | Promise<void>;

  /**
   * Called with the outcome of a command queued with `sendToDevice(..., { queueFor })`: the
   * device's answer, its error, or expiry. Runs as a turn of its own; the outcome is recorded in the
   * twin's history (`$command.delivered`, `$command.expired`) whatever the handler does.
   */
  onDeviceCommandResult?(result: DeviceCommandResult): void | Promise<void>;

  /** Called as the first turn of each activation (after state is loaded). */
  onActivate?(): void | Promise<void>;

  /** Called as the last turn before the twin is passivated. */
  onPassivate?(): void | Promise<void>;

  /** Records an event: applied to {@link state} now, persisted when the turn succeeds. */
  protected emit(event: E): void {
    this.#binding.emit(event);
  }

  /** Changes desired state (merge patch; `null` deletes). The device is told when the turn is persisted. */
  protected setDesired(patch: Partial<{ [K in keyof R]: R[K] | null }>): void {
    this.#binding.setDesired(patch as JsonObject);
  }

  /**
   * Sets (or replaces) the durable reminder `name`. It survives passivation and restarts and
   * calls {@link onReminder} when due. Takes effect when the turn is persisted.
   */
  protected schedule(
    name: string,
    when: When,
    payload: JsonObject = {},
    options: ScheduleOptions = {},
  ): void {
    this.#binding.schedule(name, when, payload, options);
  }

  /** Cancels the reminder `name` (no-op if none is set). */
  protected cancel(name: string): void {
    this.#binding.cancel(name);
  }

  /** The reminders currently set on this twin. */
  protected get reminders(): readonly Reminder[] {
    return this.#binding.reminders();
  }

  /**
   * Invokes a command on another twin and waits for its result. A call that would re-enter a twin
   * already waiting in this call chain (A → B → A) fails at once with `CallCycle`.
   */
  protected call<C extends TwinClass, K extends CommandName<C>>(
    twin: C,
    id: string,
    command: K,
    args: CommandInput<C, K>,
  ): Promise<CommandResult<C, K>>;
  protected call(target: TwinRef | string, command: string, args?: JsonObject): Promise<unknown>;
  protected call(
    first: TwinClass | TwinRef | string,
    second: string,
    third?: unknown,
    fourth?: unknown,
  ): Promise<unknown> {
    if (typeof first === "function") {
      return this.#binding.call(
        { type: first.type, id: second },
        String(third),
        (fourth ?? {}) as JsonObject,
      );
    }
    return this.#binding.call(first, second, (third ?? {}) as JsonObject);
  }

  /**
   * Sends command `command` to this twin's device (`doppel.dev.<type>.<id>.cmd`) and returns the
   * device's answer. Fails with `Unavailable` ("device … is offline") when no device listens,
   * `DeadlineExceeded` when it does not answer within `timeout` (never later than the current
   * caller's deadline), or the error the device answered with. The twin handles nothing else while
   * it waits; nothing is persisted unless the handler emits events.
   *
   * With `queueFor`, an unreachable device does not fail the call: it resolves to
   * `{ status: "queued", id, expiresAt }`, the command is persisted with this turn (bounded per
   * twin by `limits.maxQueuedDeviceCommands`: over it, `ResourceExhausted`), and its outcome
   * reaches {@link onDeviceCommandResult} later. A reachable device's answer resolves to
   * `{ status: "answered", id, result }`; while earlier commands are queued, a new one queues
   * behind them (commands reach the device in order).
   */
  protected sendToDevice(
    command: string,
    args: JsonObject,
    options: QueuedDeviceCommandOptions,
  ): Promise<DeviceCommandSent>;
  protected sendToDevice(command: string, args?: JsonObject, options?: DeviceCommandOptions): Promise<Json>;
  protected sendToDevice(
    command: string,
    args: JsonObject = {},
    options: DeviceCommandOptions | QueuedDeviceCommandOptions = {},
  ): Promise<Json | DeviceCommandSent> {
    return this.#binding.sendToDevice(command, args, options);
  }
}

/** A schema for command arguments or reported state. Any zod schema. */
export type Schema = z.ZodType;

/** What the runtime needs from a twin class (its static side). */
export interface TwinClass<T extends Twin<object, TwinEvent, object> = Twin<object, TwinEvent, object>> {
  new (): T;
  /** The registered type name (the `type` in `type/id`). */
  readonly type: string;
  /** Command name → schema of its arguments. A method of the same name handles each command. */
  readonly commands?: Readonly<Record<string, Schema>>;
  /** Schema of a reported patch's values; patches that fail it are rejected before any handler runs. */
  readonly reported?: Schema;
  /** Schema of a desired patch's values; defaults to {@link TwinClass.reported}. */
  readonly desired?: Schema;
  /** Per-type tuning. */
  readonly options?: TwinOptions;
  /** What an edge node forwards of this type's telemetry (reduction; docs/edge.md). */
  readonly edge?: EdgeOptions;
}

/** The command names of a twin class. */
export type CommandName<C extends TwinClass> =
  C["commands"] extends Readonly<Record<string, Schema>> ? Extract<keyof C["commands"], string> : never;

/** What a caller passes to command `K` of twin class `C`. */
export type CommandInput<C extends TwinClass, K extends CommandName<C>> =
  C["commands"] extends Readonly<Record<K, Schema>> ? z.input<C["commands"][K]> : never;

/** What command `K`'s handler receives (after validation and defaults). */
export type CommandArgs<C extends TwinClass, K extends CommandName<C>> =
  C["commands"] extends Readonly<Record<K, Schema>> ? z.output<C["commands"][K]> : never;

/** What command `K`'s handler returns (awaited). */
export type CommandResult<C extends TwinClass, K extends string> =
  InstanceType<C> extends Record<K, (...args: never[]) => infer Out> ? Awaited<Out> : unknown;

/**
 * Compile-time check that every declared command has a handler method taking its arguments.
 * `never` when the class is inconsistent, so registering it fails to type-check.
 */
export type CheckedTwinClass<C extends TwinClass> = C &
  (C["commands"] extends Readonly<Record<string, Schema>>
    ? InstanceType<C> extends { [K in keyof C["commands"]]: (args: z.output<C["commands"][K]>) => unknown }
      ? unknown
      : { "every command needs a method of the same name taking its arguments": never }
    : unknown);
