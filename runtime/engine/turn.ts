/**
 * One turn: the unit of work of a twin. It starts from the twin's current data, folds every event
 * the handler emits at once (so the handler sees its own events), and collects the records to
 * persist. If the handler throws, the turn is dropped whole and the twin's data is untouched.
 */
import { toMillis } from "../core/duration.ts";
import { InvalidArgument } from "../core/errors.ts";
import { isJsonObject, type JsonObject, requireJsonObject } from "../core/json.ts";
import type { Mutable } from "../core/present.ts";
import type { EventRecord, Writer } from "../core/records.ts";
import type { ScheduleOptions, Twin, TwinEvent, When } from "../core/twin.ts";
import type { TwinMessage } from "./messages.ts";
import { BuiltIn, foldInto, type TwinData } from "./twin-data.ts";

const REMINDER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;
/** Shortest interval of a repeating reminder. */
export const MIN_REMINDER_PERIOD_MS = 1000;

/** Where a turn takes its commit id from: asked once, at the turn's first event (a turn without events needs none). */
export interface CommitIds {
  nextCommitId(): string;
}

export class Turn {
  readonly records: EventRecord[] = [];
  /** The twin's data: the start until the first event, then the turn's own copy, which its events fold into. */
  data: TwinData;
  #own: Mutable<TwinData> | undefined;
  #commitId: string | undefined;

  constructor(
    private readonly twin: Twin<object, TwinEvent, object>,
    readonly message: TwinMessage,
    start: TwinData,
    private readonly commitIds: CommitIds,
    private readonly writer: Writer,
    /** The turn's time (the clock when it started): every event it records is stamped with it. */
    readonly now: number,
  ) {
    this.data = start;
  }

  /** Appends one event and folds it in. */
  record(type: string, data: JsonObject): void {
    const { causation, principal } = this.message;
    const record: Mutable<EventRecord> = {
      seq: this.data.seq + 1,
      type,
      data,
      at: this.now,
      commitId: (this.#commitId ??= this.commitIds.nextCommitId()),
      writer: this.writer,
    };
    if (causation !== undefined) record.causation = causation;
    if (principal !== undefined) record.principal = principal;
    // One copy per turn, however many events it has (nothing else holds it until the turn ends;
    // a failed turn drops it whole).
    if (!this.#own) this.data = this.#own = { ...this.data };
    foldInto(this.twin, this.#own, record);
    this.records.push(record);
  }

  /** A developer event: must be a JSON object whose `type` is a non-reserved string. */
  emit(event: TwinEvent): void {
    if (!isJsonObject(event) || typeof event.type !== "string" || event.type.length === 0) {
      throw new InvalidArgument("emit(): an event must be a JSON object with a non-empty string 'type'");
    }
    if (event.type.startsWith("$")) {
      throw new InvalidArgument(
        `emit(): event type '${event.type}' is reserved (types starting with '$' are built in)`,
      );
    }
    this.record(event.type, requireJsonObject(event, `event '${event.type}'`));
  }

  setDesired(patch: JsonObject): void {
    this.record(BuiltIn.Desired, { type: BuiltIn.Desired, patch: requireJsonObject(patch, "desired patch") });
  }

  schedule(name: string, when: When, payload: JsonObject, options: ScheduleOptions): void {
    if (!REMINDER_NAME.test(name)) {
      throw new InvalidArgument(
        `schedule(): reminder name ${JSON.stringify(name)} must match ${REMINDER_NAME}`,
      );
    }
    const dueAt =
      "at" in when
        ? typeof when.at === "number"
          ? when.at
          : when.at.getTime()
        : this.now + toMillis(when.after, "after");
    if (!Number.isFinite(dueAt))
      throw new InvalidArgument(`schedule(): reminder '${name}' has an invalid due time`);
    const data: Record<string, unknown> = {
      type: BuiltIn.ReminderSet,
      name,
      dueAt,
      payload: requireJsonObject(payload, "reminder payload"),
    };
    if (options.every !== undefined) {
      const every = toMillis(options.every, "every");
      if (every < MIN_REMINDER_PERIOD_MS) {
        throw new InvalidArgument(`schedule(): 'every' must be at least ${MIN_REMINDER_PERIOD_MS} ms`);
      }
      data["every"] = every;
    }
    this.record(BuiltIn.ReminderSet, data as JsonObject);
  }

  cancel(name: string): void {
    if (this.data.reminders.some((r) => r.name === name)) {
      this.record(BuiltIn.ReminderCancelled, { type: BuiltIn.ReminderCancelled, name });
    }
  }
}
