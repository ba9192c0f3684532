/**
 * The Thermostat's work written by hand, without the engine: the same-work baseline of
 * `bench:engine` (in memory) and `bench:ingest` (its commits written to the same store).
 */
import { toMillis } from "../runtime/core/duration.ts";
import type { TwinRef } from "../runtime/core/ids.ts";
import type { Json, JsonObject } from "../runtime/core/json.ts";
import type { ReminderIndexEntry, TwinCommit, Writer } from "../runtime/core/records.ts";
import {
  bindTwin,
  type Reminder,
  type Twin,
  type TwinBinding,
  type TwinEvent,
  type When,
} from "../runtime/core/twin.ts";
import { applyDesired, applyReported, computeDelta } from "../runtime/shadow/shadow.ts";
import {
  Thermostat,
  type ThermostatEvent,
  type ThermostatReported,
  type ThermostatState,
} from "../twins/thermostat.ts";

/**
 * The same work written by hand, without the engine: per report the Thermostat class's reported
 * schema validates the patch, the shadow merge folds it into reported (clearing met desired
 * leaves), the twin's own `onReported` runs against a plain binding whose `emit` folds events with
 * the class's `apply` and whose `setDesired` merges desired, and every event (the report's
 * `$reported` and what the handler emits) is appended to the twin's in-memory log. What it leaves
 * out is exactly the engine: mailboxes, activation through the store, turn isolation (a throwing
 * handler's events are dropped), group commit, size bounds, duplicate/stale checks, spans, metrics.
 */
export class HandWrittenTwin implements TwinBinding {
  state: object;
  reported: JsonObject = {};
  desired: JsonObject = {};
  readonly log: { seq: number; type: string; data: JsonObject; at: number }[] = [];
  /** How much of `log` {@link takeCommit} has handed out already. */
  #committed = 0;
  #createdAt = Date.now();
  readonly twin = new Thermostat();
  #reminders: { name: string; dueAt: number; payload: JsonObject }[] = [];

  constructor(readonly ref: TwinRef) {
    bindTwin(this.twin as unknown as Twin<object, TwinEvent, object>, this);
    this.state = this.twin.initialState();
  }

  get delta(): JsonObject {
    return computeDelta(this.desired, this.reported);
  }
  get version(): number {
    return this.log.length;
  }
  now(): number {
    return Date.now();
  }
  #append(type: string, data: JsonObject): void {
    this.log.push({ seq: this.log.length + 1, type, data, at: Date.now() });
  }
  report(patch: JsonObject): void {
    const parsed = Thermostat.reported.safeParse(patch);
    if (!parsed.success) throw new Error(parsed.error.message);
    const stored = parsed.data as JsonObject;
    this.#append("$reported", { type: "$reported", patch: stored });
    ({ reported: this.reported, desired: this.desired } = applyReported(this, stored));
    this.twin.onReported(stored as ThermostatReported);
  }
  emit(event: TwinEvent): void {
    this.#append(event.type, event as unknown as JsonObject);
    this.state = this.twin.apply(this.state as ThermostatState, event as ThermostatEvent);
  }
  setDesired(patch: JsonObject): void {
    this.#append("$desired", { type: "$desired", patch });
    ({ reported: this.reported, desired: this.desired } = applyDesired(this, patch));
  }
  // Reports above 30 °C raise the alarm, which sets (and on cooling cancels) a reminder: kept in memory.
  schedule(name: string, when: When, payload: JsonObject): void {
    const dueAt = "at" in when ? Number(when.at) : Date.now() + toMillis(when.after);
    this.#append("$reminder.set", { type: "$reminder.set", name, dueAt, payload });
    this.#reminders = [...this.#reminders.filter((r) => r.name !== name), { name, dueAt, payload }];
  }
  cancel(name: string): void {
    if (!this.#reminders.some((r) => r.name === name)) return;
    this.#append("$reminder.cancelled", { type: "$reminder.cancelled", name });
    this.#reminders = this.#reminders.filter((r) => r.name !== name);
  }
  /**
   * The store write of what happened since the last call, as the engine would commit it: the new
   * events (with `causation` and `writer`), the twin's view, and the reminder index changes.
   */
  takeCommit(shard: number, writer: Writer, causation: string): TwinCommit {
    const fresh = this.log.slice(this.#committed);
    const expectedSeq = this.#committed;
    this.#committed = this.log.length;
    const commitId = `${this.ref.id}:${expectedSeq + 1}`;
    const set: ReminderIndexEntry[] = [];
    const clear: string[] = [];
    for (const event of fresh) {
      if (event.type === "$reminder.set") {
        const { name, dueAt } = event.data as { name: string; dueAt: number };
        set.push({ shard, type: this.ref.type, id: this.ref.id, name, dueAt });
      } else if (event.type === "$reminder.cancelled") clear.push((event.data as { name: string }).name);
    }
    const now = Date.now();
    return {
      ref: this.ref,
      shard,
      expectedSeq,
      events: fresh.map((event) => ({ ...event, commitId, causation, writer })),
      view: {
        type: this.ref.type,
        id: this.ref.id,
        version: this.log.length,
        state: this.state as JsonObject,
        reported: this.reported,
        desired: this.desired,
        delta: this.delta,
        createdAt: this.#createdAt,
        updatedAt: now,
      },
      reminders: { set, clear },
    };
  }
  reminders(): readonly Reminder[] {
    return this.#reminders.map((r) => ({ ...r, dueAt: new Date(r.dueAt) }));
  }
  call(): Promise<unknown> {
    return Promise.reject(new Error("not in the baseline"));
  }
  sendToDevice(): Promise<Json> {
    return Promise.reject(new Error("not in the baseline"));
  }
}
