import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TwinRef } from "../../runtime/core/ids.ts";
import type { TwinCommit } from "../../runtime/core/records.ts";
import { SqliteEventStore } from "../../runtime/persistence/sqlite-store.ts";

function commitFor(ref: TwinRef, expectedSeq: number): TwinCommit {
  const seq = expectedSeq + 1;
  return {
    ref,
    shard: 0,
    expectedSeq,
    events: [
      {
        seq,
        type: "tick",
        data: { type: "tick", seq },
        at: 1_000 + seq,
        commitId: `${ref.id}-${seq}`,
        writer: { node: "n", epoch: 0 },
      },
    ],
    view: {
      type: ref.type,
      id: ref.id,
      version: seq,
      state: { seq, even: Number(ref.id.slice(1)) % 2 === 0 },
      reported: {},
      desired: {},
      delta: {},
      createdAt: 1_000,
      updatedAt: 1_000 + seq,
    },
    reminders: { set: [], clear: [] },
  };
}

const TWINS = 600;
const refs = Array.from({ length: TWINS }, (_, i) => ({
  type: "Pump",
  id: `p${String(i).padStart(5, "0")}`,
}));

describe("SqliteEventStore view queries scan in slices", () => {
  let dir: string;
  const open: SqliteEventStore[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "doppel-sqlite-slices-"));
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function openStore(scanSliceMs: number): SqliteEventStore {
    const store = new SqliteEventStore({ path: path.join(dir, "store.db"), scanSliceMs });
    open.push(store);
    return store;
  }

  it("lets a commit and a read complete while a query over every twin is still scanning", async () => {
    const store = openStore(0); // yield after every row
    await store.commit(refs.map((ref) => commitFor(ref, 0)));
    let examined = 0;
    let settled = false;
    const query = store
      .queryViews("Pump", {
        limit: Number.POSITIVE_INFINITY,
        match: (view) => {
          examined++;
          return view.state["even"] === true;
        },
      })
      .finally(() => {
        settled = true;
      });
    // Cheap calls issued after the query started complete before it has finished.
    expect(await store.commit([commitFor(refs[0]!, 1)])).toEqual([undefined]);
    expect((await store.readView(refs[1]!))?.version).toBe(1);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    expect(examined).toBeGreaterThan(0);
    expect(examined).toBeLessThan(TWINS);
    const page = await query;
    expect(examined).toBe(TWINS);
    expect(page.views).toHaveLength(TWINS / 2);
    expect(page.nextPageToken).toBeUndefined();
    expect(page.views[0]?.id).toBe("p00000");
  });

  it("pages exactly as a scan in one go does, whatever the slice", async () => {
    const sliced = openStore(0);
    await sliced.commit(refs.map((ref) => commitFor(ref, 0)));
    const whole = openStore(Number.POSITIVE_INFINITY);
    const pages = async (store: SqliteEventStore) => {
      const ids: string[][] = [];
      let pageToken: string | undefined;
      do {
        const page = await store.queryViews("Pump", {
          limit: 125,
          match: (view) => view.state["even"] === false,
          ...(pageToken ? { pageToken } : {}),
        });
        ids.push(page.views.map((view) => view.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return ids;
    };
    const expected = await pages(whole);
    expect(expected.map((page) => page.length)).toEqual([125, 125, 50]);
    expect(await pages(sliced)).toEqual(expected);
  });
});
