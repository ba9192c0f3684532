import type { DoppelNode } from "doppel/node";
import { afterEach, describe, expect, it } from "vitest";
import { HashRing } from "../../cluster/ring/hash-ring.ts";
import { Thermostat } from "../../twins/thermostat.ts";
import { Caller, Counter } from "../engine/fixtures.ts";
import { type Harness, SHARDS, startHarness } from "./cluster-harness.ts";

const ids = Array.from({ length: 40 }, (_, i) => `t${i}`);

/** Which nodes hold an activation of `key`. */
function residentOn(nodes: readonly DoppelNode[], key: string): string[] {
  return nodes.filter((n) => n.engine.resident(key)?.status === "active").map((n) => n.id);
}

describe("in-process cluster", () => {
  let h: Harness;
  afterEach(async () => {
    await h?.stop();
  });

  it("reaches every twin from every node, and runs each twin on exactly one node", async () => {
    h = await startHarness(3, [Thermostat, Counter]);
    await h.settled();
    for (const [i, id] of ids.entries()) {
      const via = h.nodes[i % 3]!;
      await via.twins.report({ type: "thermostat", id }, { temperature: 15 + (i % 10) });
    }
    for (const id of ids) {
      const views = await Promise.all(h.nodes.map((n) => n.twins.get({ type: "thermostat", id })));
      expect(new Set(views.map((v) => JSON.stringify(v))).size).toBe(1);
      const on = residentOn(h.nodes, `thermostat/${id}`);
      expect(on).toHaveLength(1);
      const shard = h.nodes[0]!.engine.shardOf("thermostat", id);
      expect(on[0]).toBe(h.nodes[0]!.coordinator!.ownerOf(shard));
    }
  });

  it("counts a key's twin creations wherever its calls land and the twins live: the quota holds across nodes", async () => {
    h = await startHarness(3, [Counter]);
    await h.settled();
    const key = { principal: "service-key:cluster-key", maxTwins: 5 };
    const results = await Promise.allSettled(
      ids
        .slice(0, 12)
        .map((id, i) =>
          h.nodes[i % 3]!.twins.invoke({ type: "counter", id }, "add", { by: 1, tag: "" }, key),
        ),
    );
    const owners = new Set(
      ids
        .slice(0, 12)
        .map((id) => h.nodes[0]!.coordinator!.ownerOf(h.nodes[0]!.engine.shardOf("counter", id))),
    );
    expect(owners.size).toBeGreaterThan(1); // creations were forwarded to, and counted by, several owners
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(5);
    for (const r of results.filter((r) => r.status === "rejected"))
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: "QUOTA_EXCEEDED" });
    expect(await h.store.twinsCreated(key.principal)).toBe(5);
    const created = ids.slice(0, 12).find((_, i) => results[i]!.status === "fulfilled")!;
    expect(
      (await h.nodes[1]!.twins.invoke({ type: "counter", id: created }, "add", { by: 1, tag: "" }, key))
        .version,
    ).toBe(2);
  });

  it("lets twins on different nodes call each other", async () => {
    h = await startHarness(3, [Caller]);
    await h.settled();
    const result = await h.nodes[0]!.twins.invoke({ type: "caller", id: "a" }, "relay", {
      path: ["b", "c", "d"],
    });
    expect(JSON.stringify(result.result)).toContain('"reached":"d"');
    await expect(
      h.nodes[1]!.twins.invoke({ type: "caller", id: "a" }, "relay", { path: ["b", "a"] }),
    ).rejects.toThrow("call cycle: caller/a → caller/b → caller/a");
  });

  it("moves only the new node's shards when a node joins, and loses nothing", async () => {
    h = await startHarness(2, [Counter]);
    await h.settled();
    const before = new HashRing(["n0", "n1"]).assignment(SHARDS);
    const load = async (round: number) =>
      Promise.all(
        ids.map((id, i) =>
          h.nodes[i % h.nodes.length]!.twins.invoke({ type: "counter", id }, "add", {
            by: 1,
            tag: `r${round}`,
          }),
        ),
      );
    await load(0);
    const joining = h.addNode();
    await load(1); // clients keep working while the node joins
    await joining;
    await h.settled();
    await load(2);
    const after = new HashRing(["n0", "n1", "n2"]).assignment(SHARDS);
    for (let shard = 0; shard < SHARDS; shard++) {
      if (before[shard] !== after[shard]) expect(after[shard]).toBe("n2");
    }
    const view = await h.nodes[0]!.cluster();
    expect(view.shards.map((s) => s.holder)).toEqual([...after]);
    for (const id of ids) {
      expect((await h.nodes[2]!.twins.get({ type: "counter", id })).state["count"]).toBe(3);
      expect(residentOn(h.nodes, `counter/${id}`).length).toBeLessThanOrEqual(1);
    }
  });

  it("hands a leaving node's shards over gracefully, with every update kept", async () => {
    h = await startHarness(3, [Counter]);
    await h.settled();
    await Promise.all(
      ids.map((id) => h.nodes[0]!.twins.invoke({ type: "counter", id }, "add", { by: 1, tag: "a" })),
    );
    const leaving = h.nodes.pop()!;
    const leave = leaving.stop();
    const during = Promise.all(
      ids.map((id) => h.nodes[1]!.twins.invoke({ type: "counter", id }, "add", { by: 1, tag: "b" })),
    );
    await leave;
    await during;
    await h.settled();
    for (const id of ids) {
      const events = await h.nodes[0]!.twins.history({ type: "counter", id }, { limit: 100 });
      expect(events.map((e) => e.seq)).toEqual([1, 2]);
      expect(residentOn([leaving], `counter/${id}`)).toEqual([]);
    }
    const view = await h.nodes[0]!.cluster();
    expect(view.nodes.map((n) => n.id)).toEqual(["n0", "n1"]);
  });

  it("tells an operator the cluster store is unreachable (UNAVAILABLE) while leases cannot be read", async () => {
    h = await startHarness(1, [Counter]);
    await h.settled();
    h.cluster.leases.available = false;
    try {
      await expect(h.nodes[0]!.cluster()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    } finally {
      h.cluster.leases.available = true;
    }
    expect((await h.nodes[0]!.cluster()).nodes.map((n) => n.id)).toEqual(["n0"]);
  });

  it("streams changes of a twin owned by another node to a watcher anywhere", async () => {
    h = await startHarness(2, [Counter]);
    await h.settled();
    const id = ids.find(
      (candidate) =>
        h.nodes[0]!.coordinator!.ownerOf(h.nodes[0]!.engine.shardOf("counter", candidate)) === "n1",
    )!;
    const changes: number[] = [];
    const seen = new Promise<void>((resolve) => {
      h.nodes[0]!.twins.watch({ type: "counter", id }, (change) => {
        changes.push(change.view.version);
        if (changes.length === 2) resolve();
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 20)); // the subscription reaches the bus
    await h.nodes[0]!.twins.invoke({ type: "counter", id }, "add", { by: 1, tag: "" });
    await h.nodes[1]!.twins.invoke({ type: "counter", id }, "add", { by: 1, tag: "" });
    await seen;
    expect(changes).toEqual([1, 2]);
  });
});
