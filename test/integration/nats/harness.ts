/**
 * Harness of the NATS integration tests: the real nats-server from `scripts/infra/nats.sh`
 * (`DOPPEL_NATS`, `DOPPEL_MQTT`), a fresh ingress stream per test file, nodes on NATS with a
 * gRPC gateway on a free loopback port and a `DoppelClient`, and helpers that wait on events
 * instead of sleeping.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { TwinClass } from "doppel";
import { DoppelNode, type EventStore, MemoryEventStore, type NodeConfigInput } from "doppel/node";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import type { TwinCommit } from "../../../runtime/core/records.ts";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";

export { eventually } from "../../support/eventually.ts";

/** The test server (scripts/infra/nats.sh up; eval "$(scripts/infra/nats.sh env)"). */
export function natsUrl(): string {
  const url = process.env["DOPPEL_NATS"];
  if (!url)
    throw new Error(
      'DOPPEL_NATS is not set: run scripts/infra/nats.sh up && eval "$(scripts/infra/nats.sh env)"',
    );
  return url;
}

export function mqttUrl(): string {
  const url = process.env["DOPPEL_MQTT"];
  if (!url) throw new Error('DOPPEL_MQTT is not set: eval "$(scripts/infra/nats.sh env)"');
  return url;
}

/** Shards of the test nodes: few, so consumers are set up quickly. */
export const TEST_SHARDS = 8;
export const STREAM = "DOPPEL_INGRESS";

/** Deletes the ingress stream (and its consumers), so a test file starts from nothing. */
export async function resetStream(name = STREAM): Promise<void> {
  const transport = await NatsTransport.connect({ servers: natsUrl() });
  try {
    const jsm = await jetstreamManager(transport.connection);
    await jsm.streams.delete(name).catch(() => false);
  } finally {
    await transport.close();
  }
}

/** The number of messages the ingress stream still holds (not yet acknowledged). */
export async function streamMessages(name = STREAM): Promise<number> {
  const transport = await NatsTransport.connect({ servers: natsUrl() });
  try {
    const jsm = await jetstreamManager(transport.connection);
    return (await jsm.streams.info(name)).state.messages;
  } finally {
    await transport.close();
  }
}

export interface NatsNode {
  readonly node: DoppelNode;
  readonly client: DoppelClient;
  stop(): Promise<void>;
}

/** Configuration of a test node on NATS (memory store unless given one, gRPC on a free port). */
export function natsNodeConfig(overrides: Partial<NodeConfigInput> = {}): NodeConfigInput {
  return {
    nodeId: "nats-test",
    store: { kind: "memory" },
    grpc: { listen: "127.0.0.1:0" },
    shards: TEST_SHARDS,
    log: { level: "silent" },
    nats: { servers: natsUrl(), consumer: { ackWait: "30s", maxAckPending: 128, maxInFlightPerTwin: 8 } },
    ...overrides,
  };
}

export async function startNatsNode(
  options: { store?: EventStore; twins?: readonly TwinClass[]; config?: Partial<NodeConfigInput> } = {},
): Promise<NatsNode> {
  const node = await DoppelNode.start(natsNodeConfig(options.config), {
    twins: options.twins ?? [Thermostat, Pump],
    store: options.store ?? new MemoryEventStore(),
    logger: silentLogger(),
  });
  const address = node.grpcAddress;
  if (!address) throw new Error("the test node serves no gRPC");
  const client = new DoppelClient(address, { timeoutMs: 15_000 });
  return {
    node,
    client,
    async stop() {
      client.close();
      await node.stop();
    },
  };
}

/** A device-side NATS connection. */
export function deviceTransport(): Promise<NatsTransport> {
  return NatsTransport.connect({ servers: natsUrl(), name: "test-device" });
}

/**
 * A memory store whose commits of `$reported` events that `holds` picks wait until `open()` is
 * called (a slow or stuck store, as the test decides); `waiting()` counts the commits held now.
 */
export function gatedStore(holds: (commit: TwinCommit) => boolean = () => true): {
  store: EventStore;
  open(): void;
  waiting(): number;
} {
  const inner = new MemoryEventStore();
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let waiting = 0;
  const store = new Proxy(inner, {
    get(target, property) {
      if (property === "commit") {
        return async (commits: readonly TwinCommit[]) => {
          if (commits.some((c) => holds(c) && c.events.some((e) => e.type === "$reported"))) {
            waiting++;
            await gate;
            waiting--;
          }
          return target.commit(commits);
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as EventStore;
  return { store, open, waiting: () => waiting };
}
