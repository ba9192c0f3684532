/**
 * A batch of one twin's turns as the engine hands it to the store, and (once persisted) to the
 * change feed. Its view is built when first read (by a store that writes views, a watcher, the
 * desired push of a change to desired, a read of the memory store), not for every commit: most
 * commits of a busy twin are never read as a view before the next one replaces it. That saving is
 * the memory store's with the in-process bus (the engine bench): the SQLite and Cassandra stores
 * write `commit.view` on every commit, and on a NATS node the change relay
 * (`runtime/routing/change-relay.ts`, subscribed to every twin) reads it for every change.
 *
 * The view is a getter on the prototype: `JSON.stringify` and spreads of a commit do not carry
 * it (nothing serialises commits whole; the change relay writes a change's fields one by one).
 */
import type { TwinRef } from "../core/ids.ts";
import type { EventRecord, TwinChange, TwinCommit, TwinCreator, TwinView } from "../core/records.ts";
import { type TwinData, toView } from "./twin-data.ts";

export class TurnCommit implements TwinCommit, TwinChange {
  creator?: TwinCreator;
  /** The twin's data after these events (immutable: a later turn works on a copy). */
  readonly #data: TwinData;
  #view: TwinView | undefined;

  constructor(
    readonly ref: TwinRef,
    readonly shard: number,
    readonly expectedSeq: number,
    readonly events: readonly EventRecord[],
    readonly reminders: TwinCommit["reminders"],
    data: TwinData,
  ) {
    this.#data = data;
  }

  get view(): TwinView {
    this.#view ??= toView(this.ref.type, this.ref.id, this.#data);
    return this.#view;
  }
}
