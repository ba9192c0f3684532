/**
 * An in-process cluster: several nodes in one process sharing a message bus, an in-memory
 * membership registry and lease store, and one in-memory event store. Real time, short timings.
 */

import type { TwinClass } from "doppel";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { type InProcessCluster, inProcessCluster } from "../../runtime/node/cluster-parts.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";

export interface Harness {
  readonly nodes: DoppelNode[];
  readonly store: MemoryEventStore;
  readonly bus: InProcessBus;
  readonly cluster: InProcessCluster;
  addNode(): Promise<DoppelNode>;
  /** Waits until every live node agrees on the members and every shard's lease is held by its assigned node. */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

export const SHARDS = 32;
let clusters = 0;

export async function startHarness(count: number, twins: readonly TwinClass[]): Promise<Harness> {
  const store = new MemoryEventStore();
  const bus = new InProcessBus();
  const cluster = await inProcessCluster(`harness-${clusters++}`, {
    heartbeatMs: 40,
    deadAfterMs: 250,
    leaseTtlMs: 600,
  });
  const nodes: DoppelNode[] = [];
  let next = 0;
  const addNode = async () => {
    const node = await DoppelNode.start(
      { nodeId: `n${next++}`, store: { kind: "memory" }, grpc: { listen: false }, shards: SHARDS },
      { twins, store, bus, cluster, logger: silentLogger() },
    );
    nodes.push(node);
    return node;
  };
  for (let i = 0; i < count; i++) await addNode();
  const settled = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const live = nodes.filter((n) => n.coordinator && !(n as unknown as { stopped?: boolean }).stopped);
      const views = await Promise.all(live.map((n) => n.cluster()));
      const ok = views.every(
        (view) =>
          view.nodes.length === live.length &&
          view.shards.every((shard) => shard.holder !== "" && shard.holder === shard.assignedTo),
      );
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(`cluster did not settle: ${JSON.stringify(views[0]?.nodes)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  return {
    nodes,
    store,
    bus,
    cluster,
    addNode,
    settled,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
