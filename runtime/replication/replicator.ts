/**
 * The cloud's side of thick-edge replication: applies batches of an edge twin's events
 * (replicated-batch.ts) to the cloud's store, idempotently by twin and seq, so batches may arrive
 * again (redelivery after an outage, a republish after an edge restart) or from several
 * replicators at once without a duplicate, a gap or a merge:
 *
 * - events at or below the cloud's head are skipped (a batch entirely below it is a `duplicate`);
 * - a batch that starts beyond head + 1 is a `gap`: nothing is written, the caller redelivers it
 *   later (after the missing batch);
 * - the rest is committed at `expectedSeq = head`, every event stamped with the edge's writer at
 *   `EDGE_OWNED_EPOCH` (core/edge-owner.ts), so the store's fencing keeps cloud writers off the
 *   twin; a concurrent replicator that got there first is seen on the re-read (`ConcurrencyConflict`
 *   is retried);
 * - a twin whose cloud log was written by a cloud node or another edge is never merged into:
 *   `conflict`, nothing written.
 *
 * What it writes it announces through `onApplied` (the node's change feed: `WatchTwin`).
 */
import { edgeOwnerOf, edgeWriter } from "../core/edge-owner.ts";
import { ConcurrencyConflict } from "../core/errors.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { TwinChange } from "../core/records.ts";
import type { EventStore } from "../persistence/event-store.ts";
import type { ReplicatedBatch } from "./replicated-batch.ts";

export type ApplyOutcome =
  | { readonly kind: "applied"; readonly events: number; readonly head: number }
  | { readonly kind: "duplicate"; readonly head: number }
  | { readonly kind: "gap"; readonly head: number; readonly first: number }
  | { readonly kind: "conflict"; readonly reason: string };

export interface ReplicatorOptions {
  /** The cloud's shard of a twin (for the commit's reminder index and fencing details). */
  readonly shardOf: (ref: TwinRef) => number;
  /** Called with what was written (after it is durable). */
  readonly onApplied?: (change: TwinChange) => void;
}

/** How many times a commit that lost a race to another replicator is re-read and retried. */
const CONFLICT_RETRIES = 5;

export class Replicator {
  readonly #store: EventStore;
  readonly #options: ReplicatorOptions;
  /** Twins known to be owned by an edge in the cloud's store (key → edge). */
  readonly #owners = new Map<string, string>();

  constructor(store: EventStore, options: ReplicatorOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** Applies one batch (see the module comment). Rejects only when the store fails (`Unavailable`). */
  async apply(batch: ReplicatedBatch): Promise<ApplyOutcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#applyOnce(batch);
      } catch (error) {
        if (!(error instanceof ConcurrencyConflict) || attempt >= CONFLICT_RETRIES) throw error;
      }
    }
  }

  async #applyOnce(batch: ReplicatedBatch): Promise<ApplyOutcome> {
    const { ref, events, view, edge } = batch;
    const head = (await this.#store.readView(ref))?.version ?? 0;
    const first = events[0]!.seq;
    const last = events.at(-1)!.seq;
    if (last <= head) return { kind: "duplicate", head };
    if (first > head + 1) return { kind: "gap", head, first };
    if (head > 0) {
      const owner = await this.#ownerOf(ref);
      if (owner !== edge) {
        return {
          kind: "conflict",
          reason:
            owner === undefined
              ? `${refKey(ref)} was written in the cloud; refusing to merge edge ${edge}'s log into it`
              : `${refKey(ref)} is owned by edge ${owner}, not ${edge}`,
        };
      }
    }
    const fresh = events
      .filter((e) => e.seq > head)
      .map((e) => ({ ...e, writer: edgeWriter(edge, e.writer.node) }));
    const [error] = await this.#store.commit([
      {
        ref,
        shard: this.#options.shardOf(ref),
        expectedSeq: head,
        events: fresh,
        view,
        // Reminders run at the edge; the cloud's index never fires them.
        reminders: { set: [], clear: [] },
      },
    ]);
    if (error) throw error;
    this.#owners.set(refKey(ref), edge);
    this.#options.onApplied?.({ ref, events: fresh, view });
    return { kind: "applied", events: fresh.length, head: last };
  }

  async #ownerOf(ref: TwinRef): Promise<string | undefined> {
    const key = refKey(ref);
    const known = this.#owners.get(key);
    if (known !== undefined) return known;
    const [firstEvent] = await this.#store.readEvents(ref, 0, 1);
    const owner = edgeOwnerOf(firstEvent?.writer);
    if (owner !== undefined) this.#owners.set(key, owner);
    return owner;
  }
}
