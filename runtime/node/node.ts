/**
 * A Doppel node: one process running twins. `DoppelNode.start` compiles the configuration, opens
 * the store, registers the twin classes and starts the engine and (unless disabled) the gRPC
 * gateway. The same code runs alone on the embedded store or as a cluster member.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { shardOf } from "../../cluster/ring/shard.ts";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { type Clock, SystemClock } from "../activation/clock.ts";
import { TwinRegistry } from "../activation/twin-type.ts";
import type { TwinRef } from "../api/ids.ts";
import type { Json } from "../api/json.ts";
import type { TwinClass } from "../api/twin.ts";
import type { DeviceIngress } from "../ingress/device-ingress.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { MemoryEventStore } from "../persistence/memory-store.ts";
import type { DeviceModel } from "../sim/device-model.ts";
import { Fleet } from "../sim/fleet.ts";
import { createLogger, type Logger } from "../telemetry/logger.ts";
import { type DeviceLink, startDeviceLink } from "./device-link.ts";
import { Engine, type ShardOwnership, singleNodeOwnership } from "./engine.ts";
import { LocalTwins } from "./local-twins.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";
import type { TwinApi } from "./twin-api.ts";

/** Parts a caller may supply instead of the ones the configuration would build (tests, embedding). */
export interface NodeParts {
  /** The twin classes to run. */
  readonly twins: readonly TwinClass[];
  readonly store?: EventStore;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly ownership?: ShardOwnership;
  /** Device models for the demo fleet (`demo` in the configuration). */
  readonly devices?: readonly DeviceModel[];
}

/** Something that runs beside the engine and stops with the node (gateway, ingress, demo fleet). */
export interface NodeService {
  stop(): Promise<void>;
}

async function openStore(config: NodeConfig, logger: Logger): Promise<EventStore> {
  switch (config.store.kind) {
    case "memory":
      return new MemoryEventStore();
    case "sqlite": {
      const { SqliteEventStore } = await import("../persistence/sqlite-store.ts");
      mkdirSync(config.dataDir, { recursive: true });
      return new SqliteEventStore({
        path: config.store.path ?? join(config.dataDir, "doppel.db"),
        synchronous: config.store.synchronous,
      });
    }
    case "cassandra": {
      const { CassandraEventStore } = await import("../persistence/cassandra/store.ts");
      const { kind: _kind, ...settings } = config.store;
      return CassandraEventStore.openConfigured(
        { ...settings, shards: config.shards },
        {
          onRetry: (attempt, delayMs, error) =>
            logger.warn({ attempt, retryInMs: delayMs, err: error.message }, "Cassandra not reachable yet"),
        },
      );
    }
  }
}

export class DoppelNode {
  readonly #services: NodeService[] = [];
  #stopped = false;
  #fleet: Fleet | undefined;
  #grpcAddress: string | undefined;
  #devices!: DeviceLink;

  private constructor(
    /** Whether the node opened its store itself (and so closes it on stop). */
    private readonly ownsStore: boolean,
    readonly id: string,
    readonly config: NodeConfig,
    readonly engine: Engine,
    /** The twins as services see them: validated, routed, persisted. */
    readonly twins: TwinApi,
    readonly logger: Logger,
    /** The in-process message bus devices reach this node on (unused when the node uses NATS). */
    readonly bus: InProcessBus,
    /** The node's device ingress (counters of accepted and refused device messages). */
    readonly ingress: DeviceIngress,
  ) {}

  /** The twin types this node runs. */
  get registry() {
    return this.engine.registry;
  }

  /** Starts a node. Fails with `InvalidArgument` for bad configuration or twin classes. */
  static async start(input: NodeConfigInput | NodeConfig, parts: NodeParts): Promise<DoppelNode> {
    const config = compileConfig(input);
    const id = config.nodeId ?? `node-${randomBytes(4).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    const limits = config.limits;
    const registry = new TwinRegistry({
      snapshotEvery: limits.snapshotEvery,
      idleTimeoutMs: limits.idleTimeout,
    });
    for (const cls of parts.twins) registry.register(cls);
    const store = parts.store ?? (await openStore(config, logger));
    const engine = new Engine(
      store,
      registry,
      parts.clock ?? SystemClock,
      parts.ownership ?? singleNodeOwnership(id),
      (type, twinId) => shardOf(type, twinId, config.shards),
      {
        nodeId: id,
        maxResident: limits.maxResident,
        idleSweepMs: limits.idleSweep,
        mailboxSize: limits.mailboxSize,
        maxPendingEvents: limits.maxPendingEvents,
        callTimeoutMs: limits.callTimeout,
        reminderPollMs: limits.reminderPoll,
        reminderBatch: 1000,
        commitMaxBatch: 512,
        commitMaxInFlight: 4,
        deviceCommandTimeoutMs: limits.deviceCommandTimeout,
      },
      logger,
    );
    const twins = new LocalTwins(engine, {
      json: { maxBytes: limits.maxPayloadBytes, maxDepth: limits.maxJsonDepth },
      defaultTimeoutMs: limits.requestTimeout,
      maxQueryLimit: 1000,
      maxHistoryLimit: 10_000,
      maxTelemetryLimit: 100_000,
    });
    engine.setCaller(
      async (target: TwinRef, command, args, chain, deadline): Promise<Json> =>
        (await twins.invoke(target, command, args, { chain, deadline })).result,
    );
    engine.start();
    const bus = new InProcessBus();
    let devices: DeviceLink;
    try {
      const owned = (parts.ownership ?? singleNodeOwnership(id)).ownedShards();
      devices = await startDeviceLink({
        config,
        nodeId: id,
        bus,
        twins,
        engine,
        logger,
        shards: owned === "all" ? Array.from({ length: config.shards }, (_, shard) => shard) : owned,
      });
    } catch (error) {
      await engine.stop();
      if (parts.store === undefined) await store.close();
      throw error;
    }
    const node = new DoppelNode(
      parts.store === undefined,
      id,
      config,
      engine,
      twins,
      logger,
      bus,
      devices.ingress,
    );
    node.#devices = devices;
    node.attach(devices);
    if (config.grpc.listen !== false) {
      try {
        const { startGateway } = await import("../gateway/server.ts");
        const gateway = await startGateway({
          api: twins,
          types: () => registry.list().map((type) => ({ name: type.name, commands: type.commandNames })),
          listen: config.grpc.listen,
          maxMessageBytes: config.grpc.maxMessageBytes,
          logger,
          clock: engine.clock,
        });
        node.attach(gateway);
        node.#grpcAddress = gateway.address;
      } catch (error) {
        await node.stop();
        throw error;
      }
    }
    if (config.demo && parts.devices && config.demo.devices > 0) {
      const fleetTransport = await devices.connectDevice(`doppel-demo-${id}`);
      node.attach({ stop: () => fleetTransport.close() });
      const fleet = new Fleet({
        transport: fleetTransport,
        models: parts.devices.filter((model) => registry.has(model.type)),
        devices: config.demo.devices,
        intervalMs: config.demo.interval,
        onError: (error) => logger.debug({ code: error.code, err: error.message }, "demo device error"),
      });
      await fleet.start();
      node.attach(fleet);
      node.#fleet = fleet;
    }
    logger.info(
      { store: config.store.kind, devices: devices.kind, types: registry.list().map((t) => t.name) },
      "node started",
    );
    return node;
  }

  /** The `host:port` the gRPC gateway listens on, when it runs. */
  get grpcAddress(): string | undefined {
    return this.#grpcAddress;
  }

  /**
   * The node's device side: its transport (NATS or in-process), ingress counters, the durable
   * JetStream consumer (`devices.durable.ownShards` / `releaseShards`) and device command counters.
   */
  get devices(): DeviceLink {
    return this.#devices;
  }

  /** The demo fleet, when one runs. */
  get fleet(): Fleet | undefined {
    return this.#fleet;
  }

  /** Adds a service that stops with the node (stopped in reverse order of adding). */
  attach(service: NodeService): void {
    this.#services.push(service);
  }

  /** Stops services, passivates every twin (persisting what is pending), closes the store if it opened it. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const service of this.#services.reverse()) {
      try {
        await service.stop();
      } catch (error) {
        this.logger.warn({ err: error }, "service did not stop cleanly");
      }
    }
    await this.engine.stop();
    if (this.ownsStore) await this.engine.store.close();
    this.logger.info("node stopped");
  }
}
