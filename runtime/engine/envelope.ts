/**
 * An envelope: one message on its way through a twin's mailbox, its turn and its write, with the
 * caller's promise it settles. It also carries the caller's deadline: armed on the engine's one
 * deadline timer (see `deadlines.ts`) when the message is queued, it refuses the wait with
 * `DeadlineExceeded` when no answer came in time (the turn itself still completes). An envelope
 * is settled once; whatever comes after (a late answer, a second failure) is dropped.
 *
 * The caller's promise is the only one a message makes: an envelope settles it with the turn's
 * outcome, or with what the caller's `answer` makes of it (the gateway's reply), so no promise
 * per message sits between the gateway and the twin.
 */
import { DeadlineExceeded, DoppelError } from "../core/errors.ts";
import type { Context } from "../observability/tracing.ts";
import { type Deadlines, Waiting } from "./deadlines.ts";
import type { TurnOutcome, TwinMessage } from "./messages.ts";

/** How an error names a message to twin `key` (`thermostat/t1.setTarget`, `thermostat/t1 report`). */
export function describeMessage(key: string, message: TwinMessage): string {
  switch (message.kind) {
    case "command":
      return `${key}.${message.name}`;
    case "reported":
      return `${key} report`;
    default:
      return `${key} ${message.kind}`;
  }
}

/** The refusal of a wait for `message` to twin `key` that had `waitedMs` until its deadline. */
export function deadlineExceeded(key: string, message: TwinMessage, waitedMs: number): DeadlineExceeded {
  return new DeadlineExceeded(
    `${describeMessage(key, message)}: no answer within ${Math.round(waitedMs)} ms`,
  );
}

/** What a caller makes of a turn's outcome (its reply); called once, when the turn's effects are persisted. */
export type Answer<T> = (outcome: TurnOutcome) => T;

/** An envelope is its own deadline wait (no second object per message). */
export class Envelope extends Waiting {
  /** The turn's answer, kept here from the end of the turn until its write is persisted. */
  outcome: TurnOutcome | undefined;
  #key = "";
  #armedAt = 0;

  constructor(
    readonly message: TwinMessage,
    private readonly settle: (value: never) => void,
    private readonly fail: (error: DoppelError) => void,
    /** What the caller's promise settles with (absent: the outcome itself). */
    private readonly answer?: Answer<unknown>,
    /** The trace context of the sender, so the turn's span continues its trace. */
    readonly context?: Context,
  ) {
    super();
  }

  /** Arms the message's deadline (if it has one): at it, the caller's wait is refused. */
  arm(deadlines: Deadlines, key: string, now: number): void {
    const deadline = this.message.deadline;
    if (deadline === undefined) return;
    this.#key = key;
    this.#armedAt = now;
    deadlines.insert(deadline, this);
  }

  resolve(outcome: TurnOutcome): void {
    this.cancel();
    const settle = this.settle as (value: unknown) => void;
    if (!this.answer) {
      settle(outcome);
      return;
    }
    let value: unknown;
    try {
      value = this.answer(outcome);
    } catch (error) {
      this.fail(DoppelError.from(error));
      return;
    }
    settle(value);
  }

  reject(error: DoppelError): void {
    this.cancel();
    this.fail(error);
  }

  /** The deadline passed: the caller stops waiting. */
  expire(): void {
    this.fail(deadlineExceeded(this.#key, this.message, this.message.deadline! - this.#armedAt));
  }
}
