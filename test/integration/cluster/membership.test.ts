/**
 * A cluster of node processes on real NATS, Redis and Cassandra, as members come and go: three
 * nodes serve every twin from every node and run each twin on exactly one node; a fourth joins
 * under device and gRPC load and then one leaves gracefully, moving only the shards the ring says,
 * with no error seen by any client and every acknowledged report in its twin's log exactly once.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { diff } from "../../../cluster/ring/diff.ts";
import type { ClusterView } from "../../../runtime/core/cluster-view.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import {
  checkServiceCalls,
  DeviceLoad,
  epochs,
  expectEveryReportOnce,
  idsInShards,
  ownershipSettled,
  residency,
  ringAssignment,
  runId,
  ServiceLoad,
  shardOfTwin,
  TestCluster,
  TYPE,
} from "./harness.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/**
 * Moved shards got a new, larger lease epoch; the others kept their holder, and their epoch unless
 * that holder lost the lease to a stall of its own (a loaded machine) and took it back: counted and
 * printed, not a move.
 */
function expectEpochsFollowMoves(before: ClusterView, after: ClusterView, moved: ReadonlySet<number>): void {
  const was = epochs(before);
  let retaken = 0;
  after.shards.forEach(({ epoch, holder }, shard) => {
    if (moved.has(shard)) expect(epoch).toBeGreaterThan(was[shard]!);
    else {
      expect(holder, `shard ${shard}`).toBe(before.shards[shard]!.holder);
      expect(epoch, `shard ${shard}`).toBeGreaterThanOrEqual(was[shard]!);
      if (epoch !== was[shard]) retaken++;
    }
  });
  if (retaken > 0)
    process.stdout.write(
      `[cluster] ${retaken} unmoved shard(s) re-leased by their own holder after a stall\n`,
    );
}

/**
 * After load ran through a membership change: no client saw an error, every acknowledged report is
 * in its twin's log exactly once without gaps, every successful call made one event, and every
 * shard is held by its assigned node.
 */
async function expectNothingLost(
  cluster: TestCluster,
  store: CassandraEventStore,
  devices: DeviceLoad,
  services: ServiceLoad,
  members: readonly string[],
): Promise<void> {
  expect(services.errors).toEqual([]);
  await expectEveryReportOnce(cluster, store, devices);
  expect(await checkServiceCalls(store, services.ok)).toEqual([]);
  await ownershipSettled(cluster, members);
}

describe("cluster membership (node processes)", () => {
  let cluster: TestCluster;
  let store: CassandraEventStore;
  const tag = runId();
  const twins = Array.from({ length: 48 }, (_, i) => `${tag}-t${i}`);

  beforeAll(async () => {
    ({ cluster, store } = await TestCluster.create("members"));
  });
  afterAll(async () => {
    await cluster?.close();
    await store?.close();
  });

  it("three nodes: every twin is reachable from every node and active on exactly one", async () => {
    onTestFailed(() => cluster.dumpLogs());
    await cluster.start("m1", "m2", "m3");
    const view = await cluster.settled(["m1", "m2", "m3"]);
    const assignment = ringAssignment(["m1", "m2", "m3"]);
    expect(view.shards.map((s) => s.holder)).toEqual([...assignment]);
    const nodes = ["m1", "m2", "m3"].map((id) => cluster.node(id));

    // Commands through every node reach every twin (routed to its owner).
    const versions = new Map<string, number>();
    for (const [i, id] of twins.entries()) {
      const via = nodes[i % 3]!;
      const { version } = await via.client.invoke({ type: TYPE, id }, "setTarget", { celsius: 22 + (i % 5) });
      versions.set(id, version);
    }
    for (const [i, id] of twins.entries()) {
      const results = await Promise.all(
        nodes.map((node) => node.client.invoke({ type: TYPE, id }, "setMode", { mode: "auto" })),
      );
      expect(results.map((r) => r.version)).toEqual(nodes.map(() => versions.get(id)));
      const views = await Promise.all(nodes.map((node) => node.client.getTwin({ type: TYPE, id })));
      for (const v of views) expect(v.state["setPoint"]).toBe(22 + (i % 5));
    }

    // Each twin is active on exactly one node: the one the ring gives its shard.
    const on = residency(await cluster.probes(nodes));
    for (const id of twins) {
      expect(on.get(`${TYPE}/${id}`), id).toEqual([assignment[shardOfTwin(id)]]);
    }
    expect(on.size).toBe(twins.length);
    await ownershipSettled(cluster, ["m1", "m2", "m3"]);

    // The operator's view (`doppel cluster --json`, GetCluster) agrees: 3 nodes, each holding
    // its assigned shards, resident twins adding up (published with each node's metadata).
    const expectedResident = new Map<string, number>();
    for (const id of twins) {
      const owner = assignment[shardOfTwin(id)]!;
      expectedResident.set(owner, (expectedResident.get(owner) ?? 0) + 1);
    }
    const deadline = Date.now() + 10_000;
    let cli: ClusterView;
    for (;;) {
      const { stdout } = await run(
        process.execPath,
        ["bin/doppel.js", "cluster", "--server", nodes[1]!.address, "--json"],
        { cwd: ROOT },
      );
      cli = JSON.parse(stdout) as ClusterView;
      const resident = cli.nodes.map((n) => [n.id, n.residentTwins]);
      if (resident.every(([id, n]) => expectedResident.get(id as string) === n) || Date.now() > deadline)
        break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(cli.name).toBe(cluster.name);
    expect(cli.self).toBe("m2");
    expect(cli.nodes.map((n) => [n.id, n.shardsOwned, n.shardsAssigned, n.residentTwins])).toEqual(
      ["m1", "m2", "m3"].map((id) => {
        const shards = assignment.filter((owner) => owner === id).length;
        return [id, shards, shards, expectedResident.get(id) ?? 0];
      }),
    );
  });

  it("WatchTwin through one node streams every change of a twin another node owns, in order", async () => {
    onTestFailed(() => cluster.dumpLogs());
    await cluster.settled(["m1", "m2", "m3"]);
    const assignment = ringAssignment(["m1", "m2", "m3"]);
    // A twin m2 owns, watched through m1, changed through m3.
    const id = [
      ...idsInShards(
        `${runId()}-watched`,
        assignment.flatMap((o, s) => (o === "m2" ? [s] : [])),
      ).values(),
    ][0]![0]!;
    const ref = { type: TYPE, id };
    const changes: { version: number; setPoint: unknown; events: string[] }[] = [];
    const setPoints = Array.from({ length: 10 }, (_, i) => 10 + i);
    let ready: () => void = () => {};
    const subscribed = new Promise<void>((resolve) => {
      ready = resolve;
    });
    const watching = (async () => {
      for await (const change of cluster
        .node("m1")
        .client.watch(ref, { skipCurrent: true, onReady: () => ready() })) {
        changes.push({
          version: change.twin.version,
          setPoint: change.twin.state["setPoint"],
          events: change.events.map((e) => e.type),
        });
        if (change.twin.state["setPoint"] === setPoints.at(-1)) return;
      }
    })();
    await subscribed;
    const versions: number[] = [];
    for (const celsius of setPoints) {
      const { version } = await cluster.node("m3").client.invoke(ref, "setTarget", { celsius });
      versions.push(version);
    }
    await watching;
    // Every persisted change, once, in order: versions strictly increasing, each command's own.
    expect(changes.map((c) => c.setPoint)).toEqual(setPoints);
    expect(changes.map((c) => c.version)).toEqual(versions);
    for (const c of changes) expect(c.events).toContain("setPointChanged");
    // The twin is active on its owner only, not on the node that served the watch.
    const on = residency(await cluster.probes(["m1", "m2", "m3"].map((n) => cluster.node(n))));
    expect(on.get(`${TYPE}/${id}`)).toEqual(["m2"]);
  });

  it("a fourth node joins under load: only its shards move, clients see no error, every report is kept once", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const before = await cluster.settled(["m1", "m2", "m3"]);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    const services = new ServiceLoad(
      ["m1", "m2", "m3"].map((id) => ({
        node: cluster.node(id),
        ids: [0, 1, 2, 3].map((n) => `${tag}-svc-${id}-${n}`),
      })),
    );
    devices.start();
    services.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const joining = await cluster.spawn("m4");
      const after = await cluster.settled(["m1", "m2", "m3", "m4"]);
      const settledAt = performance.now();
      process.stdout.write(
        `[cluster] m4 started in ${Math.round(joining.runningAt - joining.spawnedAt)} ms; every shard held by its assigned node ${Math.round(settledAt - joining.runningAt)} ms after it was running\n`,
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));

      const moves = diff(ringAssignment(["m1", "m2", "m3"]), ringAssignment(["m1", "m2", "m3", "m4"]));
      expect(moves.length).toBeGreaterThan(0);
      for (const move of moves) expect(move.to).toBe("m4");
      expectEpochsFollowMoves(before, after, new Set(moves.map((m) => m.shard)));
    } finally {
      await services.stop();
      await devices.stop();
    }
    await expectNothingLost(cluster, store, devices, services, ["m1", "m2", "m3", "m4"]);
    process.stdout.write(
      `[cluster] join: ${devices.count} device reports, ${services.calls} gRPC calls, 0 errors\n`,
    );
    await devices.close();
  }, 300_000);

  it("a node leaves gracefully (SIGTERM) under load: only its shards move, clients see no error, every report is kept once", async () => {
    onTestFailed(() => cluster.dumpLogs());
    const members = ["m1", "m2", "m3", "m4"];
    const before = await cluster.settled(members);
    const leaving = "m2";
    const staying = members.filter((id) => id !== leaving);
    const devices = new DeviceLoad(cluster.wire, twins, 250);
    const services = new ServiceLoad(
      staying.map((id) => ({
        node: cluster.node(id),
        ids: [0, 1, 2, 3].map((n) => `${tag}-leave-${id}-${n}`),
      })),
    );
    devices.start();
    services.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const code = await cluster.node(leaving).terminate();
      expect(code).toBe(0);
      const after = await cluster.settled(staying);
      await new Promise((resolve) => setTimeout(resolve, 1000));

      const moves = diff(ringAssignment(members), ringAssignment(staying));
      expect(moves.length).toBeGreaterThan(0);
      for (const move of moves) expect(move.from).toBe(leaving);
      expectEpochsFollowMoves(before, after, new Set(moves.map((m) => m.shard)));
    } finally {
      await services.stop();
      await devices.stop();
    }
    await expectNothingLost(cluster, store, devices, services, staying);
    process.stdout.write(
      `[cluster] leave: ${devices.count} device reports, ${services.calls} gRPC calls, 0 errors\n`,
    );
    await devices.close();
  }, 300_000);
});
