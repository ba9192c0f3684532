import { describe, expect, it } from "vitest";
import { TurnCommit } from "../../runtime/engine/turn-commit.ts";
import { initialData, toView } from "../../runtime/engine/twin-data.ts";
import { MemoryEventStore } from "../../runtime/persistence/memory-store.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const ref = Object.freeze({ type: "thermostat", id: "t1" });
const writer = { node: "n1", epoch: 1 };
const event = {
  seq: 1,
  type: "$reported",
  data: { type: "$reported", patch: { temperature: 20 } },
  at: 5,
  commitId: "c1",
  writer,
};
const data = {
  ...initialData(new Thermostat() as never),
  seq: 1,
  createdAt: 5,
  updatedAt: 5,
  reported: { temperature: 20 },
};
const noReminders = { set: [], clear: [] };

describe("a turn's commit", () => {
  it("builds its view when first read, once: the view of its data", () => {
    const commit = new TurnCommit(ref, 3, 0, [event], noReminders, data);
    const view = commit.view;
    expect(view).toEqual(toView("thermostat", "t1", data));
    expect(commit.view).toBe(view);
  });

  it("is what the memory store reads its view from, as a plain commit's", async () => {
    const store = new MemoryEventStore();
    expect(await store.commit([new TurnCommit(ref, 3, 0, [event], noReminders, data)])).toEqual([undefined]);
    expect(await store.readView(ref)).toEqual(toView("thermostat", "t1", data));
    expect((await store.queryViews("thermostat", { limit: 10 })).views).toEqual([
      toView("thermostat", "t1", data),
    ]);
  });
});
