import { jetstreamManager } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import { filtersOf, shardFilter } from "../../../runtime/devices/ingress/stream-config.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import {
  deviceTransport,
  eventually,
  type NatsNode,
  natsNodeConfig,
  resetStream,
  startNatsNode,
  TEST_SHARDS,
} from "./harness.ts";

/** Two nodes over one store: shards move from one to the other by `releaseShards` / `ownShards`. */
describe("ingress consumption by shard", () => {
  let a: NatsNode;
  let b: NatsNode;
  beforeAll(async () => {
    await resetStream();
    const store = new MemoryEventStore();
    a = await startNatsNode({ store, config: { nodeId: "node-a" } });
    b = await nodeWithNoShards(store);
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
    await resetStream();
  });

  async function nodeWithNoShards(store: MemoryEventStore): Promise<NatsNode> {
    const node = await DoppelNode.start(natsNodeConfig({ nodeId: "node-b" }), {
      twins: [Thermostat],
      store,
      logger: silentLogger(),
      // A later writer than node A: lease epochs only grow (A writes at its start time in µs).
      ownership: { writerFor: () => ({ node: "node-b", epoch: Date.now() * 1000 }), ownedShards: () => [] },
    });
    const client = new DoppelClient(node.grpcAddress!);
    return {
      node,
      client,
      async stop() {
        client.close();
        await node.stop();
      },
    };
  }

  it("hands a shard from one node to another: the new owner continues where the old one stopped", async () => {
    const id = "moving-1";
    const shard = shardOf("thermostat", id, TEST_SHARDS);
    const durableA = a.node.devices.durable!;
    const durableB = b.node.devices.durable!;
    expect(durableA.ownedShards()).toHaveLength(TEST_SHARDS);
    expect(durableB.ownedShards()).toEqual([]);

    const wire = await deviceTransport();
    try {
      const device = new DeviceClient({ transport: wire, type: "thermostat", id });
      await device.report({ temperature: 19 });
      await eventually(
        () => (a.node.ingress.stats.applied >= 1 ? true : undefined),
        "node A applied the first report",
      );

      await durableA.releaseShards([shard]);
      expect(durableA.ownedShards()).not.toContain(shard);
      // While nobody owns the shard, reports wait in the stream.
      await device.report({ temperature: 20 });
      await durableB.ownShards([shard]);
      expect(durableB.ownedShards()).toEqual([shard]);
      await eventually(
        () => (b.node.ingress.stats.applied >= 1 ? true : undefined),
        "node B applied the second report",
      );
      expect(a.node.ingress.stats.applied).toBe(1);
      const events = await b.node.twins.history({ type: "thermostat", id }, { limit: 100 });
      expect(events.filter((e) => e.type === "$reported").map((e) => e.writer.node)).toEqual([
        "node-a",
        "node-b",
      ]);
    } finally {
      await wire.close();
    }
  });

  it("stops a shard released while its consumer is still being set up (gained and handed on at once)", async () => {
    const id = "quick-1";
    const shard = shardOf("thermostat", id, TEST_SHARDS);
    expect(shard).not.toBe(shardOf("thermostat", "moving-1", TEST_SHARDS));
    const durableA = a.node.devices.durable!;
    const durableB = b.node.devices.durable!;
    await durableA.releaseShards([shard]);
    const deliveredToB = durableB.stats.delivered;

    // B gains the shard and hands it on before its consumer is bound.
    const owning = durableB.ownShards([shard]);
    await durableB.releaseShards([shard]);
    await owning;
    expect(durableB.ownedShards()).not.toContain(shard);

    const wire = await deviceTransport();
    try {
      const device = new DeviceClient({ transport: wire, type: "thermostat", id });
      for (let i = 0; i < 5; i++) await device.report({ temperature: 19 + i });
      const appliedByA = a.node.ingress.stats.applied;
      await durableA.ownShards([shard]);
      await eventually(
        () => (a.node.ingress.stats.applied >= appliedByA + 5 ? true : undefined),
        "node A applied the five reports",
      );
      // Nothing was ever delivered to B's released consumer.
      expect(durableB.stats.delivered).toBe(deliveredToB);
    } finally {
      await wire.close();
    }
  });

  it("puts back into its consumer's filter a shard that another node's edit dropped (no compare-and-set in JetStream)", async () => {
    const durableA = a.node.devices.durable!;
    // A twin of a shard A still owns (the tests above moved some to B).
    let n = 0;
    while (!durableA.ownedShards().includes(shardOf("thermostat", `dropped-${n}`, TEST_SHARDS))) n++;
    const id = `dropped-${n}`;
    const dropped = shardFilter(shardOf("thermostat", id, TEST_SHARDS));
    const wire = await deviceTransport();
    try {
      // What a peer's stale read-modify-write leaves: A's filter without a shard A owns.
      const jsm = await jetstreamManager(wire.connection);
      const info = await jsm.consumers.info(durableA.stream.name, durableA.consumerName);
      const filters = filtersOf(info);
      expect(filters).toContain(dropped);
      await jsm.consumers.update(durableA.stream.name, durableA.consumerName, {
        filter_subjects: filters.filter((filter) => filter !== dropped),
      });
      const applied = a.node.ingress.stats.applied;
      const device = new DeviceClient({ transport: wire, type: "thermostat", id });
      // Acknowledged once stored; applied only once A's consumer covers the shard again.
      await device.report({ temperature: 23 });
      await eventually(
        () => (a.node.ingress.stats.applied > applied ? true : undefined),
        "node A to apply the report of the dropped shard",
      );
      const after = await jsm.consumers.info(durableA.stream.name, durableA.consumerName);
      expect(filtersOf(after)).toContain(dropped);
      expect((await a.client.getTwin({ type: "thermostat", id })).reported).toMatchObject({
        temperature: 23,
      });
    } finally {
      await wire.close();
    }
  });
});
