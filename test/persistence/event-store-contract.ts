/**
 * The `EventStore` contract: the behaviour every implementation (in-memory, SQLite, Cassandra)
 * must show. Each implementation's test file calls {@link describeEventStoreContract} with a way to
 * open a store.
 *
 * The suite never depends on timing, on one backend, or on a clean database: every test writes
 * under twin types made unique with a random suffix, reminder tests use their own shards or time
 * windows and clean up after themselves, and nothing assumes the store starts empty. It can
 * therefore run against a shared, persistent server.
 */
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConcurrencyConflict,
  type DoppelError,
  ErrorCode,
  QuotaExceeded,
} from "../../runtime/core/errors.ts";
import type { TwinRef } from "../../runtime/core/ids.ts";
import type { JsonObject } from "../../runtime/core/json.ts";
import type {
  EventRecord,
  ReminderIndexEntry,
  TelemetrySample,
  TwinCommit,
  TwinCreator,
  TwinSnapshot,
  TwinView,
  Writer,
} from "../../runtime/core/records.ts";
import type { EventStore } from "../../runtime/persistence/event-store.ts";
import { encodePageToken } from "../../runtime/persistence/page-token.ts";

/** What a test file hands the contract suite for each test: a fresh store and how to dispose of it. */
export interface ContractHarness {
  /** An open store the test owns (it may close it). */
  readonly store: EventStore;
  /**
   * For durable stores: closes the current store (the one above, or the last one `reopen` returned)
   * and opens a new one over the same data. Absent for stores that keep nothing (durability tests are skipped).
   */
  readonly reopen?: () => Promise<EventStore>;
  /** Closes whatever store is open (closing twice must be harmless) and frees its resources. */
  readonly cleanup: () => Promise<void>;
  /**
   * For stores that several processes can share: opens another store over the same data (a
   * second node's), which `cleanup` closes too. Absent for stores that live in one process.
   */
  readonly another?: () => Promise<EventStore>;
}

/** Opens a store for one test. Called before every test; `cleanup` runs after it. */
export type OpenEventStore = () => Promise<ContractHarness>;

const BASE_AT = 1_700_000_000_000;
const WRITER: Writer = { node: "node-a", epoch: 1 };

/** A twin type no other test (or earlier run against the same server) has used. */
function uniqueType(prefix = "T"): string {
  return `${prefix}${randomUUID().replaceAll("-", "")}`;
}

/** A shard number no other test uses (well inside a 32-bit signed int). */
function uniqueShard(): number {
  return 1_000_000 + Math.floor(Math.random() * 2_000_000_000);
}

function twin(id = "d1", type = uniqueType()): TwinRef {
  return { type, id };
}

function makeEvents(from: number, count: number, commitId: string, writer: Writer = WRITER): EventRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const seq = from + i;
    return {
      seq,
      type: "counted",
      data: { type: "counted", n: seq },
      at: BASE_AT + seq * 100,
      commitId,
      writer,
    };
  });
}

function makeView(ref: TwinRef, version: number, state: JsonObject = { n: version }): TwinView {
  return {
    type: ref.type,
    id: ref.id,
    version,
    state,
    reported: { v: version },
    desired: {},
    delta: {},
    createdAt: BASE_AT,
    updatedAt: BASE_AT + version * 100,
  };
}

interface CommitOptions {
  readonly commitId?: string;
  readonly writer?: Writer;
  readonly shard?: number;
  readonly set?: readonly ReminderIndexEntry[];
  readonly clear?: readonly string[];
  readonly state?: JsonObject;
  readonly events?: readonly EventRecord[];
}

/** A commit of `count` events continuing the log after `expectedSeq`, with the matching view. */
function makeCommit(
  ref: TwinRef,
  expectedSeq: number,
  count: number,
  options: CommitOptions = {},
): TwinCommit {
  const commitId = options.commitId ?? randomUUID();
  const events = options.events ?? makeEvents(expectedSeq + 1, count, commitId, options.writer);
  return {
    ref,
    shard: options.shard ?? 0,
    expectedSeq,
    events,
    view: makeView(ref, expectedSeq + events.length, options.state),
    reminders: { set: options.set ?? [], clear: options.clear ?? [] },
  };
}

function reminder(ref: TwinRef, shard: number, name: string, dueAt: number): ReminderIndexEntry {
  return { shard, type: ref.type, id: ref.id, name, dueAt };
}

function expectConflict(result: DoppelError | undefined): void {
  expect(result?.code).toBe(ErrorCode.ConcurrencyConflict);
  expect(result).toBeInstanceOf(ConcurrencyConflict);
}

/** The fence's refusal: the writer's epoch is older than the twin's newest. Nothing was written. */
function expectStaleEpoch(result: DoppelError | undefined, epoch: number, twinEpoch: number): void {
  expect(result?.code).toBe(ErrorCode.Unavailable);
  expect(result?.details).toMatchObject({ retry: "not-owner", reason: "stale-epoch", epoch, twinEpoch });
  expect(result?.message).toContain(`lease epoch ${twinEpoch}`);
}

/** A commit that lost a race at its expectedSeq: a conflict, or (its epoch older) the fence's refusal. */
function expectRefusedAppend(result: DoppelError | undefined): void {
  if (result?.code === ErrorCode.Unavailable) expect(result.details).toMatchObject({ reason: "stale-epoch" });
  else expectConflict(result);
}

async function commitAll(store: EventStore, commits: readonly TwinCommit[]): Promise<void> {
  const results = await store.commit(commits);
  expect(results).toHaveLength(commits.length);
  expect(results.filter((r) => r !== undefined)).toEqual([]);
}

async function readAllPages(
  store: EventStore,
  type: string,
  limit: number,
  match?: (view: TwinView) => boolean,
): Promise<TwinView[][]> {
  const pages: TwinView[][] = [];
  let pageToken: string | undefined;
  do {
    const page = await store.queryViews(type, match ? { limit, pageToken, match } : { limit, pageToken });
    pages.push([...page.views]);
    pageToken = page.nextPageToken;
    if (pages.length > 1000) throw new Error("queryViews never ends: a page token keeps coming back");
  } while (pageToken !== undefined);
  return pages;
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function paddedIds(count: number, prefix = "d"): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);
}

function snapshotAt(seq: number, state: JsonObject = { n: seq }): TwinSnapshot {
  return {
    seq,
    at: BASE_AT + seq * 100,
    createdAt: BASE_AT,
    state,
    reported: { temperature: 21.5 },
    desired: { target: 20 },
    reminders: [{ name: "tick", dueAt: BASE_AT + 60_000, payload: { why: "poll" }, every: 60_000 }],
    recent: ["msg-1", "msg-2"],
  };
}

/**
 * Declares `<name>: EventStore contract`, the tests every {@link EventStore} must pass. `open` is
 * called before each test and must give it a usable store; `cleanup` runs after each test.
 */
/**
 * Declares the contract tests. `durable` says whether the store keeps data across close and
 * reopen (its harness must then provide `reopen`); the durability test exists only for those.
 */
export function describeEventStoreContract(
  name: string,
  open: OpenEventStore,
  options: { readonly durable: boolean; readonly shared?: boolean } = { durable: true },
): void {
  describe(`${name}: EventStore contract`, () => {
    let harness: ContractHarness;
    let store: EventStore;

    beforeEach(async () => {
      harness = await open();
      store = harness.store;
    });

    afterEach(async () => {
      await harness.cleanup();
    });

    describe("the event log", () => {
      it("loads a twin that never committed as no snapshot, no events and no quarantine", async () => {
        const loaded = await store.loadTwin(twin());
        expect(loaded).toEqual({ snapshot: undefined, events: [], quarantine: undefined });
      });

      it("appends the events of successive commits in order and loadTwin returns them all", async () => {
        const ref = twin();
        const first = makeCommit(ref, 0, 3);
        const second = makeCommit(ref, 3, 2);
        await commitAll(store, [first]);
        await commitAll(store, [second]);
        const loaded = await store.loadTwin(ref);
        expect(loaded.snapshot).toBeUndefined();
        expect(loaded.events).toEqual([...first.events, ...second.events]);
        expect(loaded.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      });

      it("readEvents returns the events after afterSeq, ascending, at most limit", async () => {
        const ref = twin();
        const commit = makeCommit(ref, 0, 10);
        await commitAll(store, [commit]);
        expect(await store.readEvents(ref, 0)).toEqual(commit.events);
        expect((await store.readEvents(ref, 4)).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
        expect((await store.readEvents(ref, 4, 3)).map((e) => e.seq)).toEqual([5, 6, 7]);
        expect((await store.readEvents(ref, 8, 5)).map((e) => e.seq)).toEqual([9, 10]);
        expect(await store.readEvents(ref, 10)).toEqual([]);
        expect(await store.readEvents(twin(), 0)).toEqual([]);
      });

      it("keeps the logs of twins with the same id but different types apart", async () => {
        const a = twin("same");
        const b = twin("same");
        await commitAll(store, [makeCommit(a, 0, 2), makeCommit(b, 0, 1)]);
        expect(await store.readEvents(a, 0)).toHaveLength(2);
        expect(await store.readEvents(b, 0)).toHaveLength(1);
      });

      it("commits for 200 twins in one call all land", async () => {
        const type = uniqueType();
        const commits = paddedIds(200).map((id) => makeCommit({ type, id }, 0, 2));
        await commitAll(store, commits);
        for (const commit of commits) {
          expect(await store.readEvents(commit.ref, 0)).toEqual(commit.events);
          expect(await store.readView(commit.ref)).toEqual(commit.view);
        }
        const pages = await readAllPages(store, type, 500);
        expect(pages.flat().map((v) => v.id)).toEqual(paddedIds(200));
      });
    });

    describe("optimistic concurrency", () => {
      it("refuses a commit whose expectedSeq is not the end of the log with ConcurrencyConflict, for that commit only", async () => {
        const ref = twin();
        const other = twin();
        await commitAll(store, [makeCommit(ref, 0, 2)]);
        const stale = makeCommit(ref, 1, 1);
        const ahead = makeCommit(ref, 5, 1);
        const fine = makeCommit(other, 0, 1);
        const results = await store.commit([stale, fine, ahead]);
        expect(results).toHaveLength(3);
        expectConflict(results[0]);
        expect(results[1]).toBeUndefined();
        expectConflict(results[2]);
        expect(await store.readEvents(other, 0)).toEqual(fine.events);
        expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2]);
      });

      it("writes nothing of a conflicting commit: no events, no view, no reminder changes", async () => {
        const ref = twin();
        const shard = uniqueShard();
        const kept = reminder(ref, shard, "kept", 1_000);
        const landed = makeCommit(ref, 0, 2, { shard, set: [kept], state: { winner: true } });
        await commitAll(store, [landed]);
        const conflicting = makeCommit(ref, 1, 3, {
          shard,
          set: [reminder(ref, shard, "intruder", 500)],
          clear: ["kept"],
          state: { winner: false },
        });
        const [result] = await store.commit([conflicting]);
        expectConflict(result);
        expect(await store.readEvents(ref, 0)).toEqual(landed.events);
        expect(await store.readView(ref)).toEqual(landed.view);
        expect(await store.dueReminders([shard], 10_000, 10)).toEqual([kept]);
      });

      it("accepts a commit retried with the same commit id without writing its events twice", async () => {
        const ref = twin();
        const commit = makeCommit(ref, 0, 3);
        await commitAll(store, [commit]);
        await commitAll(store, [commit]);
        expect(await store.readEvents(ref, 0)).toEqual(commit.events);
        expect(await store.readView(ref)).toEqual(commit.view);
      });

      it("accepts a commit retried in a later call, after further commits, and changes nothing", async () => {
        const ref = twin();
        const shard = uniqueShard();
        const first = makeCommit(ref, 0, 2, { shard, set: [reminder(ref, shard, "early", 100)] });
        const second = makeCommit(ref, 2, 2, {
          shard,
          clear: ["early"],
          set: [reminder(ref, shard, "late", 200)],
        });
        await commitAll(store, [first]);
        await commitAll(store, [second]);
        await commitAll(store, [makeCommit(twin(), 0, 1), first]);
        expect(await store.readEvents(ref, 0)).toEqual([...first.events, ...second.events]);
        expect(await store.readView(ref)).toEqual(second.view);
        expect(await store.dueReminders([shard], 10_000, 10)).toEqual([reminder(ref, shard, "late", 200)]);
      });

      it("lets the first of two writers at the same expectedSeq win and refuses the second", async () => {
        const ref = twin();
        const a = makeCommit(ref, 0, 2, { writer: { node: "node-a", epoch: 1 } });
        const b = makeCommit(ref, 0, 2, { writer: { node: "node-b", epoch: 2 } });
        await commitAll(store, [a]);
        const [result] = await store.commit([b]);
        expectConflict(result);
        expect(await store.readEvents(ref, 0)).toEqual(a.events);
      });

      it("lets exactly one of two writers committing concurrently at the same expectedSeq win", async () => {
        const ref = twin();
        const a = makeCommit(ref, 0, 2, { writer: { node: "node-a", epoch: 1 } });
        const b = makeCommit(ref, 0, 2, { writer: { node: "node-b", epoch: 2 } });
        const [[ra], [rb]] = await Promise.all([store.commit([a]), store.commit([b])]);
        const winners = [ra, rb].filter((r) => r === undefined);
        expect(winners).toHaveLength(1);
        expectRefusedAppend(ra ?? rb);
        const winner = ra === undefined ? a : b;
        expect(await store.readEvents(ref, 0)).toEqual(winner.events);
        expect(await store.readView(ref)).toEqual(winner.view);
      });

      it("lets exactly one of two writers at the same expectedSeq in one call win", async () => {
        const ref = twin();
        const a = makeCommit(ref, 0, 1, { writer: { node: "node-a", epoch: 1 } });
        const b = makeCommit(ref, 0, 1, { writer: { node: "node-b", epoch: 2 } });
        const results = await store.commit([a, b]);
        expect(results.filter((r) => r === undefined)).toHaveLength(1);
        expectRefusedAppend(results[0] ?? results[1]);
        const winner = results[0] === undefined ? a : b;
        expect(await store.readEvents(ref, 0)).toEqual(winner.events);
      });

      it("refuses a commit whose events do not continue the log at expectedSeq + 1, writing nothing of it", async () => {
        const ref = twin();
        const other = twin();
        await commitAll(store, [makeCommit(ref, 0, 1)]);
        const gap = makeCommit(ref, 1, 1, { events: makeEvents(3, 1, "gap") });
        const fine = makeCommit(other, 0, 1);
        const results = await store.commit([gap, fine]);
        expect(results[0]?.code).toBe(ErrorCode.InvalidArgument);
        expect(results[1]).toBeUndefined();
        expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1]);
        expect(await store.readView(ref)).toEqual(makeView(ref, 1));
      });
    });

    describe("fencing (lease epochs)", () => {
      const at = (epoch: number, node = `node-${epoch}`): Writer => ({ node, epoch });

      it("refuses a commit whose writer epoch is older than the twin's newest with a clean not-owner error, writing nothing", async () => {
        const ref = twin();
        const shard = uniqueShard();
        await commitAll(store, [makeCommit(ref, 0, 2, { writer: at(1) })]);
        await commitAll(store, [makeCommit(ref, 2, 1, { writer: at(2), state: { owner: 2 } })]);
        // The old owner resumes with a commit at the right expectedSeq (it re-read the log, or its
        // write was computed on the newest state): the fence alone refuses it.
        const late = makeCommit(ref, 3, 2, {
          writer: at(1),
          shard,
          set: [reminder(ref, shard, "late", 10)],
          state: { owner: 1 },
        });
        const [result] = await store.commit([late]);
        expectStaleEpoch(result, 1, 2);
        expect((await store.readEvents(ref, 0)).map((e) => [e.seq, e.writer.epoch])).toEqual([
          [1, 1],
          [2, 1],
          [3, 2],
        ]);
        expect(await store.readView(ref)).toEqual(makeView(ref, 3, { owner: 2 }));
        expect(await store.dueReminders([shard], 1_000, 10)).toEqual([]);
        expect((await store.loadTwin(ref)).quarantine).toBeUndefined();
      });

      describe("claim at activation (LoadOptions.claimEpoch)", () => {
        it("refuses the old owner's late commit once the new owner claimed the twin, before the new owner wrote anything", async () => {
          const ref = twin();
          await commitAll(store, [makeCommit(ref, 0, 2, { writer: at(1) })]);
          const claimed = await store.loadTwin(ref, { claimEpoch: 2 });
          expect(claimed.events.map((e) => e.seq)).toEqual([1, 2]);
          // The old owner's commit at the head, computed before its lease expired, lands now.
          const [late] = await store.commit([makeCommit(ref, 2, 1, { writer: at(1), state: { owner: 1 } })]);
          expectStaleEpoch(late, 1, 2);
          expect((await store.readEvents(ref, 0)).map((e) => e.writer.epoch)).toEqual([1, 1]);
          // The new owner's first commit continues the log it loaded.
          await commitAll(store, [makeCommit(ref, 2, 1, { writer: at(2), state: { owner: 2 } })]);
          expect((await store.readEvents(ref, 0)).map((e) => e.writer.epoch)).toEqual([1, 1, 2]);
          expect(await store.readView(ref)).toEqual(makeView(ref, 3, { owner: 2 }));
        });

        it("claims a twin that has never been written: the old owner's first commit is refused, the new owner's lands", async () => {
          const ref = twin();
          const claimed = await store.loadTwin(ref, { claimEpoch: 7 });
          expect(claimed).toEqual({ snapshot: undefined, events: [], quarantine: undefined });
          const [late] = await store.commit([makeCommit(ref, 0, 1, { writer: at(6) })]);
          expectStaleEpoch(late, 6, 7);
          await commitAll(store, [makeCommit(ref, 0, 2, { writer: at(7) })]);
          expect((await store.readEvents(ref, 0)).map((e) => [e.seq, e.writer.epoch])).toEqual([
            [1, 7],
            [2, 7],
          ]);
        });

        it("refuses a claim older than the twin's newest claim or write, and accepts claiming again at the same or a newer epoch", async () => {
          const ref = twin();
          await commitAll(store, [makeCommit(ref, 0, 1, { writer: at(3) })]);
          await expect(store.loadTwin(ref, { claimEpoch: 2 })).rejects.toMatchObject({
            code: ErrorCode.Unavailable,
            details: { retry: "not-owner", reason: "stale-epoch", epoch: 2, twinEpoch: 3 },
          });
          await store.loadTwin(ref, { claimEpoch: 5 });
          await expect(store.loadTwin(ref, { claimEpoch: 4 })).rejects.toMatchObject({
            details: { reason: "stale-epoch", epoch: 4, twinEpoch: 5 },
          });
          expect((await store.loadTwin(ref, { claimEpoch: 5 })).events.map((e) => e.seq)).toEqual([1]);
          // A writer at the claimed epoch, and one newer than it, may still commit.
          await commitAll(store, [makeCommit(ref, 1, 1, { writer: at(5) })]);
          await commitAll(store, [makeCommit(ref, 2, 1, { writer: at(6) })]);
          const [late] = await store.commit([makeCommit(ref, 3, 1, { writer: at(5) })]);
          expectStaleEpoch(late, 5, 6);
        });

        it("a load without a claim changes nothing: the old owner may still commit", async () => {
          const ref = twin();
          await commitAll(store, [makeCommit(ref, 0, 1, { writer: at(1) })]);
          await store.loadTwin(ref);
          await commitAll(store, [makeCommit(ref, 1, 1, { writer: at(1) })]);
          expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2]);
        });
      });

      it("refuses an older epoch whatever its expectedSeq: behind, at or ahead of the head", async () => {
        const ref = twin();
        await commitAll(store, [makeCommit(ref, 0, 1, { writer: at(3) }), makeCommit(twin(), 0, 1)]);
        for (const expectedSeq of [0, 1, 4]) {
          const [result] = await store.commit([makeCommit(ref, expectedSeq, 1, { writer: at(2) })]);
          expectStaleEpoch(result, 2, 3);
        }
        expect((await store.readEvents(ref, 0)).map((e) => e.writer.epoch)).toEqual([3]);
      });

      it("accepts the same epoch and newer epochs at the head, and refuses only the commit of the stale writer in a call", async () => {
        const ref = twin();
        const other = twin();
        await commitAll(store, [
          makeCommit(ref, 0, 1, { writer: at(1) }),
          makeCommit(other, 0, 1, { writer: at(5) }),
        ]);
        await commitAll(store, [makeCommit(ref, 1, 1, { writer: at(1) })]);
        const results = await store.commit([
          makeCommit(ref, 2, 1, { writer: at(4) }),
          makeCommit(other, 1, 1, { writer: at(4) }),
        ]);
        expect(results[0]).toBeUndefined();
        expectStaleEpoch(results[1], 4, 5);
        await commitAll(store, [makeCommit(ref, 3, 1, { writer: at(4, "node-x") })]);
        expect((await store.readEvents(ref, 0)).map((e) => e.writer.epoch)).toEqual([1, 1, 4, 4]);
        expect((await store.readEvents(other, 0)).map((e) => e.writer.epoch)).toEqual([5]);
      });

      it("keeps refusing the stale writer after the new owner's commits cross a bucket-sized run of events", async () => {
        const ref = twin();
        // 150 events in commits of 7 cross partition boundaries of the Cassandra layout.
        let seq = 0;
        while (seq < 150) {
          const epoch = seq < 70 ? 1 : 2;
          await commitAll(store, [makeCommit(ref, seq, 7, { writer: at(epoch) })]);
          seq += 7;
          const [late] = await store.commit([makeCommit(ref, seq, 7, { writer: at(epoch - 1) })]);
          expectStaleEpoch(late, epoch - 1, epoch);
        }
        const events = await store.readEvents(ref, 0);
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
        expect((await store.loadTwin(ref)).quarantine).toBeUndefined();
      });

      if (options.shared) {
        it("lets exactly one of two stores (two nodes) win each race at one expectedSeq, and the log never forks", async () => {
          const other = await harness.another!();
          const ref = twin();
          let seq = 0;
          let epochA = 1;
          let epochB = 1;
          for (let round = 0; round < 20; round++) {
            // Node B takes over now and then (a newer epoch); A keeps its old one for a while.
            if (round % 5 === 4) epochB = Math.max(epochA, epochB) + 1;
            const a = makeCommit(ref, seq, 2, { writer: at(epochA, "node-a") });
            const b = makeCommit(ref, seq, 3, { writer: at(epochB, "node-b") });
            const [[ra], [rb]] = await Promise.all([store.commit([a]), other.commit([b])]);
            const won = [ra, rb].filter((r) => r === undefined);
            expect(won.length).toBeLessThanOrEqual(1);
            if (ra !== undefined) expectRefusedAppend(ra);
            if (rb !== undefined) expectRefusedAppend(rb);
            if (ra === undefined) seq += 2;
            if (rb === undefined) seq += 3;
            if (ra !== undefined && rb !== undefined) {
              // Both refused can only mean A was fenced and B lost to nothing: impossible.
              throw new Error(`round ${round}: both refused: ${ra.message} / ${rb.message}`);
            }
            if (round % 5 === 0) epochA = epochB; // A learns the newest epoch (it took the shard back)
          }
          const events = await store.readEvents(ref, 0);
          expect(events.map((e) => e.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
          const epochs = events.map((e) => e.writer.epoch);
          expect(epochs).toEqual([...epochs].sort((x, y) => x - y));
          expect(await other.readEvents(ref, 0)).toEqual(events);
          expect((await store.loadTwin(ref)).quarantine).toBeUndefined();
        });
      }
    });

    describe("snapshots", () => {
      it("loadTwin returns the latest snapshot and only the events after it", async () => {
        const ref = twin();
        const commit = makeCommit(ref, 0, 5);
        await commitAll(store, [commit]);
        await store.writeSnapshot(ref, snapshotAt(3));
        const loaded = await store.loadTwin(ref);
        expect(loaded.snapshot).toEqual(snapshotAt(3));
        expect(loaded.events).toEqual(commit.events.slice(3));
        await store.writeSnapshot(ref, snapshotAt(5));
        const later = await store.loadTwin(ref);
        expect(later.snapshot).toEqual(snapshotAt(5));
        expect(later.events).toEqual([]);
      });

      it("never replaces a newer snapshot with an older one", async () => {
        const ref = twin();
        await commitAll(store, [makeCommit(ref, 0, 6)]);
        await store.writeSnapshot(ref, snapshotAt(4, { newer: true }));
        await store.writeSnapshot(ref, snapshotAt(2, { newer: false }));
        const loaded = await store.loadTwin(ref);
        expect(loaded.snapshot).toEqual(snapshotAt(4, { newer: true }));
        expect(loaded.events.map((e) => e.seq)).toEqual([5, 6]);
      });

      it("round-trips every field of a snapshot", async () => {
        const ref = twin();
        await commitAll(store, [makeCommit(ref, 0, 1)]);
        const snapshot: TwinSnapshot = {
          seq: 1,
          at: BASE_AT + 123,
          createdAt: BASE_AT - 5,
          state: { mode: "heat", nested: { list: [1, "two", { three: 3 }], flag: false, none: null } },
          reported: { temperature: -3.25, label: "Küche 🌡️" },
          desired: { target: 19.5 },
          reminders: [
            { name: "once", dueAt: BASE_AT + 1, payload: {} },
            { name: "every", dueAt: BASE_AT + 2, payload: { a: [1, 2] }, every: 5_000 },
          ],
          recent: ["m-1", "m-2", "m-3"],
          deviceSeq: 1_764_000_000_000_123,
          reportedAt: { temperature: BASE_AT + 7, label: BASE_AT + 8 },
        };
        await store.writeSnapshot(ref, snapshot);
        expect((await store.loadTwin(ref)).snapshot).toEqual(snapshot);
      });
    });

    describe("views", () => {
      it("round-trips the reported field times of a view", async () => {
        const ref = twin();
        const commit = makeCommit(ref, 0, 1);
        const view = { ...commit.view, reportedAt: { v: BASE_AT + 1, nested: { w: BASE_AT + 2 } } };
        await commitAll(store, [{ ...commit, view }]);
        expect(await store.readView(ref)).toEqual(view);
      });

      it("readView is undefined before the first commit and then returns the last committed view", async () => {
        const ref = twin();
        expect(await store.readView(ref)).toBeUndefined();
        const first = makeCommit(ref, 0, 1, { state: { step: 1 } });
        await commitAll(store, [first]);
        expect(await store.readView(ref)).toEqual(first.view);
        const second = makeCommit(ref, 1, 2, { state: { step: 2 } });
        await commitAll(store, [second]);
        expect(await store.readView(ref)).toEqual(second.view);
      });

      it("queryViews returns only views of the requested type, ordered by id", async () => {
        const type = uniqueType();
        const otherType = uniqueType();
        const ids = ["b", "a", "c-1", "C", "0", "_x", "c"];
        await commitAll(store, [
          ...ids.map((id) => makeCommit({ type, id }, 0, 1)),
          makeCommit({ type: otherType, id: "a" }, 0, 1),
        ]);
        const page = await store.queryViews(type, { limit: 100 });
        expect(page.views.map((v) => v.id)).toEqual([...ids].sort());
        expect(page.views.every((v) => v.type === type)).toBe(true);
        expect(page.nextPageToken).toBeUndefined();
        expect(page.views[0]).toEqual(makeView({ type, id: "0" }, 1));
      });

      it("queryViews pages with limit and nextPageToken until exhausted, without duplicates or gaps", async () => {
        const type = uniqueType();
        const ids = paddedIds(23);
        await commitAll(
          store,
          shuffled(ids).map((id) => makeCommit({ type, id }, 0, 1)),
        );
        const pages = await readAllPages(store, type, 5);
        expect(pages.map((p) => p.length)).toEqual([5, 5, 5, 5, 3]);
        expect(pages.flat().map((v) => v.id)).toEqual(ids);
      });

      it("queryViews gives no page token when the last page is exactly full", async () => {
        const type = uniqueType();
        const ids = paddedIds(10);
        await commitAll(
          store,
          ids.map((id) => makeCommit({ type, id }, 0, 1)),
        );
        const whole = await store.queryViews(type, { limit: 10 });
        expect(whole.views.map((v) => v.id)).toEqual(ids);
        expect(whole.nextPageToken).toBeUndefined();
        const pages = await readAllPages(store, type, 5);
        expect(pages.map((p) => p.map((v) => v.id))).toEqual([ids.slice(0, 5), ids.slice(5)]);
      });

      it("queryViews keeps scanning past long runs of views that match rejects, so every page but the last is full", async () => {
        const type = uniqueType();
        const ids = paddedIds(700);
        await commitAll(
          store,
          shuffled(ids).map((id) => makeCommit({ type, id }, 0, 1)),
        );
        // Matches far apart: filling the second page means skipping ~600 rejected views.
        const wanted = [1, 2, 3, 600, 601, 650, 699].map((i) => ids[i]!);
        const pages = await readAllPages(store, type, 2, (v) => wanted.includes(v.id));
        expect(pages.flat().map((v) => v.id)).toEqual(wanted);
        for (const page of pages.slice(0, -1)) expect(page).toHaveLength(2);
        expect(pages.length).toBeGreaterThan(3);
      });

      it("queryViews returns an empty last page when match accepts nothing or the type has no views", async () => {
        const type = uniqueType();
        await commitAll(
          store,
          paddedIds(50).map((id) => makeCommit({ type, id }, 0, 1)),
        );
        expect(await store.queryViews(type, { limit: 10, match: () => false })).toEqual({ views: [] });
        expect(await store.queryViews(uniqueType(), { limit: 10 })).toEqual({ views: [] });
      });

      it("queryViews passes the view to match and returns the accepted views unchanged", async () => {
        const type = uniqueType();
        await commitAll(store, [
          makeCommit({ type, id: "hot" }, 0, 1, { state: { temperature: 30 } }),
          makeCommit({ type, id: "cold" }, 0, 1, { state: { temperature: 5 } }),
        ]);
        const page = await store.queryViews(type, {
          limit: 10,
          match: (v) => typeof v.state["temperature"] === "number" && v.state["temperature"] > 20,
        });
        expect(page.views).toEqual([makeView({ type, id: "hot" }, 1, { temperature: 30 })]);
      });

      it("queryViews refuses a malformed page token with InvalidArgument", async () => {
        const type = uniqueType();
        await commitAll(store, [makeCommit({ type, id: "a" }, 0, 1)]);
        for (const pageToken of [
          "not a token!",
          "%%%",
          encodePageToken({ before: "a" }),
          encodePageToken({ after: 3 }),
        ]) {
          await expect(store.queryViews(type, { limit: 5, pageToken })).rejects.toMatchObject({
            code: ErrorCode.InvalidArgument,
          });
        }
      });
    });

    describe("history", () => {
      async function tenEvents(): Promise<{ ref: TwinRef; events: readonly EventRecord[] }> {
        const ref = twin();
        const commit = makeCommit(ref, 0, 10);
        await commitAll(store, [commit]);
        return { ref, events: commit.events };
      }
      const at = (seq: number) => BASE_AT + seq * 100;

      it("readHistory selects by version range, bounds inclusive", async () => {
        const { ref, events } = await tenEvents();
        expect(await store.readHistory(ref, { fromVersion: 3, toVersion: 6, limit: 100 })).toEqual(
          events.slice(2, 6),
        );
        expect((await store.readHistory(ref, { fromVersion: 8, limit: 100 })).map((e) => e.seq)).toEqual([
          8, 9, 10,
        ]);
        expect((await store.readHistory(ref, { toVersion: 2, limit: 100 })).map((e) => e.seq)).toEqual([
          1, 2,
        ]);
      });

      it("readHistory selects by time range, bounds inclusive", async () => {
        const { ref } = await tenEvents();
        const slice = await store.readHistory(ref, { since: at(3), until: at(5), limit: 100 });
        expect(slice.map((e) => e.seq)).toEqual([3, 4, 5]);
        expect((await store.readHistory(ref, { since: at(9) + 1, limit: 100 })).map((e) => e.seq)).toEqual([
          10,
        ]);
        expect((await store.readHistory(ref, { until: at(2) - 1, limit: 100 })).map((e) => e.seq)).toEqual([
          1,
        ]);
      });

      it("readHistory combines version and time ranges and honours limit, ascending", async () => {
        const { ref, events } = await tenEvents();
        const both = await store.readHistory(ref, { fromVersion: 4, since: at(2), until: at(8), limit: 100 });
        expect(both.map((e) => e.seq)).toEqual([4, 5, 6, 7, 8]);
        const limited = await store.readHistory(ref, {
          fromVersion: 4,
          since: at(2),
          until: at(8),
          limit: 2,
        });
        expect(limited.map((e) => e.seq)).toEqual([4, 5]);
        expect(await store.readHistory(ref, { limit: 100 })).toEqual(events);
        expect(await store.readHistory(ref, { fromVersion: 7, toVersion: 3, limit: 100 })).toEqual([]);
        expect(await store.readHistory(twin(), { limit: 100 })).toEqual([]);
      });
    });

    describe("reminder index", () => {
      it("dueReminders returns the entries set by commits in the given shards, due ones only, by dueAt", async () => {
        const [s1, s2, s3] = [uniqueShard(), uniqueShard(), uniqueShard()];
        const a = twin();
        const b = twin();
        const c = twin();
        await commitAll(store, [
          makeCommit(a, 0, 1, {
            shard: s1,
            set: [reminder(a, s1, "r1", 10), reminder(a, s1, "r2", 30), reminder(a, s1, "r3", 20)],
          }),
          makeCommit(b, 0, 1, { shard: s2, set: [reminder(b, s2, "r1", 15)] }),
          makeCommit(c, 0, 1, { shard: s3, set: [reminder(c, s3, "r1", 5)] }),
        ]);
        expect(await store.dueReminders([s1, s2], 25, 100)).toEqual([
          reminder(a, s1, "r1", 10),
          reminder(b, s2, "r1", 15),
          reminder(a, s1, "r3", 20),
        ]);
        expect(await store.dueReminders([s1, s2], 30, 100)).toHaveLength(4);
        expect(await store.dueReminders([s3], 4, 100)).toEqual([]);
        expect(await store.dueReminders([s3], 5, 100)).toEqual([reminder(c, s3, "r1", 5)]);
        expect(await store.dueReminders([], 1_000, 100)).toEqual([]);
      });

      it("dueReminders returns at most limit entries, the earliest first", async () => {
        const shard = uniqueShard();
        const ref = twin();
        const set = [50, 10, 40, 20, 30].map((dueAt) => reminder(ref, shard, `r${dueAt}`, dueAt));
        await commitAll(store, [makeCommit(ref, 0, 1, { shard, set })]);
        expect(await store.dueReminders([shard], 1_000, 2)).toEqual([
          reminder(ref, shard, "r10", 10),
          reminder(ref, shard, "r20", 20),
        ]);
      });

      it('dueReminders with "all" returns due entries of every shard, ordered by dueAt', async () => {
        // Realistic shard numbers (stores may enumerate shards for "all"), a private time window far
        // in the past, and a cleanup commit, so other data in a shared store cannot interfere.
        const window = 1_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
        const a = twin();
        const b = twin();
        const mine = [
          reminder(a, 0, "x", window + 3),
          reminder(b, 1, "y", window + 1),
          reminder(a, 0, "z", window + 2),
        ];
        await commitAll(store, [
          makeCommit(a, 0, 1, { set: [mine[0]!, mine[2]!, reminder(a, 0, "later", window + 50)] }),
          makeCommit(b, 0, 1, { shard: 1, set: [mine[1]!] }),
        ]);
        const due = await store.dueReminders("all", window + 10, 10_000);
        expect(due.every((r) => r.dueAt <= window + 10)).toBe(true);
        expect(due.map((r) => r.dueAt)).toEqual([...due.map((r) => r.dueAt)].sort((x, y) => x - y));
        const ours = due.filter((r) => r.type === a.type || r.type === b.type);
        expect(ours).toEqual([mine[1], mine[2], mine[0]]);
        await commitAll(store, [
          makeCommit(a, 1, 1, { clear: ["x", "z", "later"] }),
          makeCommit(b, 1, 1, { shard: 1, clear: ["y"] }),
        ]);
        const after = await store.dueReminders("all", window + 100, 10_000);
        expect(after.filter((r) => r.type === a.type || r.type === b.type)).toEqual([]);
      });

      it("earliestReminders gives each given shard's earliest due time; shards without entries are absent", async () => {
        const [s1, s2, s3] = [uniqueShard(), uniqueShard(), uniqueShard()];
        const a = twin();
        const b = twin();
        await commitAll(store, [
          makeCommit(a, 0, 1, {
            shard: s1,
            set: [reminder(a, s1, "r30", 30), reminder(a, s1, "r10", 10), reminder(a, s1, "r20", 20)],
          }),
          makeCommit(b, 0, 1, { shard: s2, set: [reminder(b, s2, "r15", 15)] }),
        ]);
        expect(await store.earliestReminders([s1, s2, s3])).toEqual(
          new Map([
            [s1, 10],
            [s2, 15],
          ]),
        );
        expect(await store.earliestReminders([s3])).toEqual(new Map());
        expect(await store.earliestReminders([])).toEqual(new Map());
        // Cleared and moved entries no longer count.
        await commitAll(store, [
          makeCommit(a, 1, 1, { shard: s1, clear: ["r10"] }),
          makeCommit(b, 1, 1, { shard: s2, set: [reminder(b, s2, "r15", 45)] }),
        ]);
        expect(await store.earliestReminders([s1, s2])).toEqual(
          new Map([
            [s1, 20],
            [s2, 45],
          ]),
        );
      });

      it('earliestReminders with "all" covers every shard', async () => {
        // Realistic shard numbers (stores may enumerate shards for "all"); other data of a shared
        // store may hold earlier entries in these shards, never later ones than ours.
        const a = twin();
        const b = twin();
        await commitAll(store, [
          makeCommit(a, 0, 1, { set: [reminder(a, 0, "x", 3), reminder(a, 0, "y", 7)] }),
          makeCommit(b, 0, 1, { shard: 1, set: [reminder(b, 1, "z", 5)] }),
        ]);
        const earliest = await store.earliestReminders("all");
        expect(earliest.get(0)).toBeLessThanOrEqual(3);
        expect(earliest.get(1)).toBeLessThanOrEqual(5);
        await commitAll(store, [
          makeCommit(a, 1, 1, { clear: ["x", "y"] }),
          makeCommit(b, 1, 1, { shard: 1, clear: ["z"] }),
        ]);
      });

      it("re-setting a reminder with a new dueAt replaces the old entry", async () => {
        const shard = uniqueShard();
        const ref = twin();
        await commitAll(store, [makeCommit(ref, 0, 1, { shard, set: [reminder(ref, shard, "tick", 10)] })]);
        await commitAll(store, [makeCommit(ref, 1, 1, { shard, set: [reminder(ref, shard, "tick", 40)] })]);
        expect(await store.dueReminders([shard], 25, 100)).toEqual([]);
        expect(await store.dueReminders([shard], 100, 100)).toEqual([reminder(ref, shard, "tick", 40)]);
      });

      it("a cleared reminder is gone from the index, and the others of the twin stay", async () => {
        const shard = uniqueShard();
        const ref = twin();
        await commitAll(store, [
          makeCommit(ref, 0, 1, {
            shard,
            set: [reminder(ref, shard, "a", 10), reminder(ref, shard, "b", 20)],
          }),
        ]);
        await commitAll(store, [makeCommit(ref, 1, 1, { shard, clear: ["a"] })]);
        expect(await store.dueReminders([shard], 100, 100)).toEqual([reminder(ref, shard, "b", 20)]);
      });

      it("keeps reminders of the same name on different twins apart", async () => {
        const shard = uniqueShard();
        const a = twin();
        const b = twin();
        await commitAll(store, [
          makeCommit(a, 0, 1, { shard, set: [reminder(a, shard, "tick", 10)] }),
          makeCommit(b, 0, 1, { shard, set: [reminder(b, shard, "tick", 20)] }),
        ]);
        await commitAll(store, [makeCommit(a, 1, 1, { shard, clear: ["tick"] })]);
        expect(await store.dueReminders([shard], 100, 100)).toEqual([reminder(b, shard, "tick", 20)]);
      });
    });

    describe("quarantine", () => {
      it("a quarantine shows in loadTwin with its reason until released", async () => {
        const ref = twin();
        const commit = makeCommit(ref, 0, 2);
        await commitAll(store, [commit]);
        await store.quarantine(ref, "another writer appended at version 3");
        const loaded = await store.loadTwin(ref);
        expect(loaded.quarantine).toBe("another writer appended at version 3");
        expect(loaded.events).toEqual(commit.events);
        await store.quarantine(ref, "second reason");
        expect((await store.loadTwin(ref)).quarantine).toBe("second reason");
        await store.release(ref);
        expect((await store.loadTwin(ref)).quarantine).toBeUndefined();
      });

      it("quarantines a twin that never committed and affects no other twin", async () => {
        const ref = twin();
        const other = twin(ref.id);
        await store.quarantine(ref, "operator hold");
        expect((await store.loadTwin(ref)).quarantine).toBe("operator hold");
        expect((await store.loadTwin(other)).quarantine).toBeUndefined();
        await store.release(other);
        expect((await store.loadTwin(ref)).quarantine).toBe("operator hold");
      });
    });

    describe("telemetry", () => {
      it("stores a keyed sample once however often it is appended; unkeyed samples at one ms are all kept", async () => {
        const ref = twin();
        const keyed: TelemetrySample = { ref, at: 500, metrics: { v: 1 }, key: "msg-1/0" };
        await store.appendTelemetry([keyed]);
        await store.appendTelemetry([keyed, { ...keyed, key: "msg-1/1", metrics: { v: 2 } }]);
        await store.appendTelemetry([
          { ref, at: 500, metrics: { v: 1 } },
          { ref, at: 500, metrics: { v: 1 } },
        ]);
        const read = await store.readTelemetry(ref, { since: 0, until: 1000, limit: 100 });
        expect(read.map((s) => s.metrics["v"]).sort()).toEqual([1, 1, 1, 2]);
      });

      it("readTelemetry returns samples in [since, until), ascending, at most limit, of one twin only", async () => {
        const ref = twin();
        const other = twin(ref.id);
        const sample = (r: TwinRef, at: number, value: number): TelemetrySample => ({
          ref: r,
          at,
          metrics: { value, half: value / 2 },
        });
        await store.appendTelemetry([
          sample(ref, 300, 3),
          sample(ref, 100, 1),
          sample(other, 200, 99),
          sample(ref, 200, 2),
          sample(ref, 400, -4.5),
        ]);
        await store.appendTelemetry([sample(ref, 200, 2.5)]);
        const all = await store.readTelemetry(ref, { since: 0, until: 10_000, limit: 100 });
        expect(all.map((s) => s.at)).toEqual([100, 200, 200, 300, 400]);
        expect(all.every((s) => s.ref.type === ref.type && s.ref.id === ref.id)).toBe(true);
        expect(all.filter((s) => s.at === 200).map((s) => s.metrics)).toEqual(
          expect.arrayContaining([
            { value: 2, half: 1 },
            { value: 2.5, half: 1.25 },
          ]),
        );
        expect(all.at(-1)?.metrics).toEqual({ value: -4.5, half: -2.25 });
        const window = await store.readTelemetry(ref, { since: 200, until: 400, limit: 100 });
        expect(window.map((s) => s.at)).toEqual([200, 200, 300]);
        const limited = await store.readTelemetry(ref, { since: 0, until: 10_000, limit: 2 });
        expect(limited.map((s) => s.at)).toEqual([100, 200]);
        expect(await store.readTelemetry(other, { since: 0, until: 10_000, limit: 100 })).toEqual([
          sample(other, 200, 99),
        ]);
        expect(await store.readTelemetry(twin(), { since: 0, until: 10_000, limit: 100 })).toEqual([]);
      });
    });

    describe("round trips", () => {
      it("round-trips unicode, nested objects, arrays, numbers, booleans and null in event and view data", async () => {
        const ref = twin();
        const data: JsonObject = {
          type: "mixed",
          text: 'héllo wörld ✓ 温度 🌡️ \u00e9\u0301 "quoted" \\ back\nslash\ttab \u0000 nul',
          "key with spaces": 1,
          "ключ.$x": "dotted",
          "": "empty key",
          numbers: [
            0,
            1,
            -1,
            Math.PI,
            0.1,
            -2.5e-10,
            1e21,
            Number.MAX_SAFE_INTEGER,
            -Number.MAX_SAFE_INTEGER,
          ],
          flags: [true, false],
          nothing: null,
          empty: { obj: {}, arr: [] },
          deep: { a: { b: { c: { d: [{ e: [[1, [2, { f: null }]]] }] } } } },
        };
        const events: EventRecord[] = [
          {
            seq: 1,
            type: "mixed",
            data,
            at: BASE_AT,
            commitId: "c-1",
            causation: "device-msg-42",
            writer: { node: "node-ü", epoch: 123_456_789_012 },
            principal: "service-key:3f2a9c01b7de",
          },
          {
            seq: 2,
            type: "$reported",
            data: { type: "$reported" },
            at: BASE_AT + 1,
            commitId: "c-1",
            writer: WRITER,
          },
        ];
        const commit = makeCommit(ref, 0, 2, { events, state: data });
        await commitAll(store, [commit]);
        const [first, second] = await store.readEvents(ref, 0);
        expect(first).toEqual(events[0]);
        expect(first?.causation).toBe("device-msg-42");
        expect(first?.writer).toEqual({ node: "node-ü", epoch: 123_456_789_012 });
        expect(second).toEqual(events[1]);
        expect(second?.causation).toBeUndefined();
        expect(first?.principal).toBe("service-key:3f2a9c01b7de"); // the audit trail
        expect(second?.principal).toBeUndefined();
        expect(await store.readView(ref)).toEqual(commit.view);
        expect((await store.loadTwin(ref)).events).toEqual(events);
      });

      it("round-trips event and view data of about 60 KB", async () => {
        const ref = twin();
        const big = "x🌡".repeat(12_000);
        const list = Array.from({ length: 500 }, (_, i) => ({ i, label: `item-${i}` }));
        const data: JsonObject = { type: "big", big, list };
        const events: EventRecord[] = [
          { seq: 1, type: "big", data, at: BASE_AT, commitId: "big-1", writer: WRITER },
        ];
        const commit = makeCommit(ref, 0, 1, { events, state: { big, list } });
        expect(Buffer.byteLength(JSON.stringify(data))).toBeGreaterThan(60_000);
        await commitAll(store, [commit]);
        expect(await store.readEvents(ref, 0)).toEqual(events);
        expect(await store.readView(ref)).toEqual(commit.view);
        expect((await store.queryViews(ref.type, { limit: 1 })).views).toEqual([commit.view]);
      });
    });

    describe("lifecycle", () => {
      it("rejects calls with Unavailable after close, and closing twice is harmless", async () => {
        const ref = twin();
        await commitAll(store, [makeCommit(ref, 0, 1)]);
        await store.close();
        await store.close();
        await expect(store.readView(ref)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
        await expect(store.loadTwin(ref)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
        await expect(store.commit([makeCommit(ref, 1, 1)])).rejects.toMatchObject({
          code: ErrorCode.Unavailable,
        });
      });

      // Only stores that keep data across a restart are asked to.
      if (options.durable) {
        it("keeps everything written across close and reopen: events, snapshot, views, reminders, quarantine, telemetry", async () => {
          if (!harness.reopen)
            throw new Error(`${name} is declared durable but its harness cannot reopen it`);
          const ref = twin();
          const shard = uniqueShard();
          const first = makeCommit(ref, 0, 2, { shard, set: [reminder(ref, shard, "tick", 10)] });
          const second = makeCommit(ref, 2, 1, {
            shard,
            set: [reminder(ref, shard, "tock", 20)],
            state: { last: true },
          });
          await commitAll(store, [first]);
          await commitAll(store, [second]);
          await store.writeSnapshot(ref, snapshotAt(2));
          await store.quarantine(ref, "held for inspection");
          const samples: TelemetrySample[] = [
            { ref, at: 5, metrics: { a: 1 } },
            { ref, at: 5, metrics: { a: 2 } },
            { ref, at: 6, metrics: { a: 3.5 } },
          ];
          await store.appendTelemetry(samples);

          store = await harness.reopen();

          const loaded = await store.loadTwin(ref);
          expect(loaded.snapshot).toEqual(snapshotAt(2));
          expect(loaded.events).toEqual(second.events);
          expect(loaded.quarantine).toBe("held for inspection");
          expect(await store.readEvents(ref, 0)).toEqual([...first.events, ...second.events]);
          expect(await store.readView(ref)).toEqual(second.view);
          expect((await store.queryViews(ref.type, { limit: 10 })).views).toEqual([second.view]);
          expect(await store.readHistory(ref, { fromVersion: 2, limit: 10 })).toEqual([
            first.events[1],
            ...second.events,
          ]);
          expect(await store.dueReminders([shard], 100, 10)).toEqual([
            reminder(ref, shard, "tick", 10),
            reminder(ref, shard, "tock", 20),
          ]);
          const telemetry = await store.readTelemetry(ref, { since: 0, until: 100, limit: 10 });
          expect(telemetry.map((s) => s.at)).toEqual([5, 5, 6]);
          expect(telemetry.map((s) => s.metrics)).toEqual(
            expect.arrayContaining(samples.map((s) => s.metrics)),
          );
          // Commit ids survive too: a retry is still recognised, and the log continues where it ended.
          await commitAll(store, [first]);
          await commitAll(store, [makeCommit(ref, 3, 1)]);
          expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
        });
      }
    });
    describe("the twin-creation quota", () => {
      /** A principal label no other test (or earlier run against the same server) has used. */
      const uniquePrincipal = () => `service-key:${randomUUID().replaceAll("-", "").slice(0, 12)}`;
      const creating = (ref: TwinRef, creator: TwinCreator, options: CommitOptions = {}): TwinCommit => ({
        ...makeCommit(ref, 0, 1, options),
        creator,
      });
      const outcomes = (results: readonly (DoppelError | undefined)[]) =>
        results.map((r) => r?.code ?? "ok").sort();

      it("counts each twin a principal creates and refuses a creation beyond maxTwins with QUOTA_EXCEEDED, writing nothing of it", async () => {
        const type = uniqueType();
        const creator = { principal: uniquePrincipal(), maxTwins: 2 };
        expect(await store.twinsCreated(creator.principal)).toBe(0);
        await commitAll(store, [creating({ type, id: "a" }, creator)]);
        await commitAll(store, [creating({ type, id: "b" }, creator)]);
        expect(await store.twinsCreated(creator.principal)).toBe(2);
        const [refused] = await store.commit([creating({ type, id: "c" }, creator)]);
        expect(refused).toBeInstanceOf(QuotaExceeded);
        expect(refused?.code).toBe(ErrorCode.QuotaExceeded);
        expect(refused?.details).toMatchObject({
          quota: "maxTwins",
          principal: creator.principal,
          limit: 2,
          used: 2,
        });
        expect(refused?.message).toContain("at most 2 twins (quota maxTwins) and has created 2");
        expect(await store.readEvents({ type, id: "c" }, 0)).toEqual([]);
        expect(await store.readView({ type, id: "c" })).toBeUndefined();
        expect(await store.twinsCreated(creator.principal)).toBe(2);
      });

      it("counts only real creations: not later commits, retries of a creation, conflicting creations, or commits without a creator", async () => {
        const ref = twin();
        const creator = { principal: uniquePrincipal(), maxTwins: 1 };
        const first = creating(ref, creator);
        await commitAll(store, [first]);
        // The principal is at its quota, yet writes to the twin it created (and retries) pass.
        await commitAll(store, [{ ...makeCommit(ref, 1, 2), creator }]);
        await commitAll(store, [first]);
        expect(await store.twinsCreated(creator.principal)).toBe(1);
        const rival = { principal: uniquePrincipal(), maxTwins: 5 };
        const [conflict] = await store.commit([creating(ref, rival)]);
        expectRefusedAppend(conflict);
        expect(await store.twinsCreated(rival.principal)).toBe(0);
        await commitAll(store, [makeCommit(twin(), 0, 1)]);
        expect(await store.twinsCreated(creator.principal)).toBe(1);
        expect((await store.readEvents(ref, 0)).map((e) => e.seq)).toEqual([1, 2, 3]);
      });

      it("keeps each principal's count apart, and maxTwins 0 refuses every creation", async () => {
        const type = uniqueType();
        const a = { principal: uniquePrincipal(), maxTwins: 1 };
        const b = { principal: uniquePrincipal(), maxTwins: 1 };
        const none = { principal: uniquePrincipal(), maxTwins: 0 };
        await commitAll(store, [creating({ type, id: "a" }, a), creating({ type, id: "b" }, b)]);
        const [refused] = await store.commit([creating({ type, id: "n" }, none)]);
        expect(refused?.details).toMatchObject({ limit: 0, used: 0 });
        expect([await store.twinsCreated(a.principal), await store.twinsCreated(b.principal)]).toEqual([
          1, 1,
        ]);
        expect(await store.twinsCreated(none.principal)).toBe(0);
      });

      it("lets exactly maxTwins of the creations in one call land and refuses the rest", async () => {
        const type = uniqueType();
        const creator = { principal: uniquePrincipal(), maxTwins: 3 };
        const results = await store.commit(paddedIds(5).map((id) => creating({ type, id }, creator)));
        expect(outcomes(results)).toEqual(["QUOTA_EXCEEDED", "QUOTA_EXCEEDED", "ok", "ok", "ok"]);
        expect(await store.twinsCreated(creator.principal)).toBe(3);
        const created = (await store.queryViews(type, { limit: 10 })).views.map((v) => v.id);
        expect(created).toEqual(paddedIds(5).filter((_, i) => results[i] === undefined));
      });

      if (options.durable) {
        it("keeps the count across close and reopen", async () => {
          const type = uniqueType();
          const creator = { principal: uniquePrincipal(), maxTwins: 2 };
          await commitAll(store, [
            creating({ type, id: "a" }, creator),
            creating({ type, id: "b" }, creator),
          ]);
          store = await harness.reopen!();
          expect(await store.twinsCreated(creator.principal)).toBe(2);
          const [refused] = await store.commit([creating({ type, id: "c" }, creator)]);
          expect(refused?.code).toBe(ErrorCode.QuotaExceeded);
        });
      }

      if (options.shared) {
        it("shares the count between stores over the same data: concurrent creations never pass maxTwins", async () => {
          const other = await harness.another!();
          const type = uniqueType();
          const creator = { principal: uniquePrincipal(), maxTwins: 4 };
          const ids = paddedIds(10);
          const results = await Promise.all(
            ids.map(async (id, i) => {
              const [result] = await (i % 2 === 0 ? store : other).commit([creating({ type, id }, creator)]);
              return result;
            }),
          );
          expect(outcomes(results).filter((o) => o === "ok")).toHaveLength(4);
          expect(outcomes(results).filter((o) => o === "QUOTA_EXCEEDED")).toHaveLength(6);
          expect(await other.twinsCreated(creator.principal)).toBe(4);
          expect(await store.twinsCreated(creator.principal)).toBe(4);
        });
      }
    });
  });
}
