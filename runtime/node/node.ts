/**
 * A Doppel node: one process running twins. `DoppelNode.start` compiles the configuration, opens
 * the store, registers the twin classes and starts the engine, the device side and (unless
 * disabled) the gRPC gateway. The same code runs alone on the embedded store or as a cluster
 * member (`cluster` in the configuration): then a coordinator places shards by consistent hashing
 * over the live members, leases fence every write, and a router sends each call to the twin's owner.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { shardOf } from "../../cluster/ring/shard.ts";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { NatsTransport } from "../../cluster/transport/nats.ts";
import type { Transport } from "../../cluster/transport/transport.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import { type ClusterView, soloClusterView } from "../core/cluster-view.ts";
import type { TwinRef } from "../core/ids.ts";
import type { Json } from "../core/json.ts";
import type { TwinClass } from "../core/twin.ts";
import type { TwinApi } from "../core/twin-api.ts";
import { type DeviceLink, natsOptions, startDeviceLink } from "../devices/device-link.ts";
import type { DeviceIngress } from "../devices/ingress/device-ingress.ts";
import { Engine, type ShardOwnership, singleNodeOwnership } from "../engine/engine.ts";
import { LocalTwins } from "../engine/local-twins.ts";
import { TwinRegistry } from "../engine/twin-type.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import { NodeMetrics } from "../observability/metrics.ts";
import { installTracing } from "../observability/tracing.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { MemoryEventStore } from "../persistence/memory-store.ts";
import { relayChanges } from "../routing/change-relay.ts";
import { ClusterCoordinator } from "../routing/coordinator.ts";
import { leaseOwnership } from "../routing/lease-ownership.ts";
import { serveNodeRpc } from "../routing/node-rpc.ts";
import { Router } from "../routing/router.ts";
import type { DeviceModel } from "../sim/device-model.ts";
import { Fleet } from "../sim/fleet.ts";
import { type ClusterParts, type InProcessCluster, openClusterParts } from "./cluster-parts.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";

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
  /** Join an in-process cluster (several nodes in one process, for tests); needs `bus`. */
  readonly cluster?: InProcessCluster;
  /** The in-process bus to use (shared by the nodes of an in-process cluster). */
  readonly bus?: InProcessBus;
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
  #coordinator: ClusterCoordinator | undefined;
  #metrics: NodeMetrics | undefined;

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
    /** The node's writer epoch when it runs alone (cluster members write with lease epochs). */
    readonly epoch: number,
    readonly startedAt: number,
  ) {}

  /** The twin types this node runs. */
  get registry() {
    return this.engine.registry;
  }

  /** The node's device ingress (counters of accepted and refused device messages). */
  get ingress(): DeviceIngress {
    return this.#devices.ingress;
  }

  /** Starts a node. Fails with `InvalidArgument` for bad configuration or twin classes, `Unavailable` for unreachable servers. */
  static async start(input: NodeConfigInput | NodeConfig, parts: NodeParts): Promise<DoppelNode> {
    const config = compileConfig(input);
    const id = config.nodeId ?? `node-${randomBytes(4).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    const traces = process.env["DOPPEL_TRACES"];
    if (config.tracing.enabled || config.tracing.exporter === "console" || traces) {
      installTracing(config.tracing.exporter === "console" || traces === "console" ? "console" : undefined);
    }
    const limits = config.limits;
    const clock = parts.clock ?? SystemClock;
    const registry = new TwinRegistry({
      snapshotEvery: limits.snapshotEvery,
      idleTimeoutMs: limits.idleTimeout,
    });
    for (const cls of parts.twins) registry.register(cls);

    // Everything opened from here on is closed again if a later step fails.
    const opened: (() => Promise<void>)[] = [];
    const unwind = async () => {
      for (const close of opened.reverse()) await close().catch(() => undefined);
    };
    try {
      const store = parts.store ?? (await openStore(config, logger));
      if (parts.store === undefined) opened.push(() => store.close());
      // Metrics first: every part reports into them. Gauges read the engine at scrape time.
      let engineRef: Engine | undefined;
      const metrics = new NodeMetrics(id, {
        residentTwins: () => engineRef?.catalog.size ?? 0,
        mailboxDepth: () => engineRef?.catalog.mailboxDepth() ?? 0,
        shardsOwned: () => {
          const owned = engineRef?.ownership.ownedShards() ?? [];
          return owned === "all" ? config.shards : owned.length;
        },
      });
      opened.push(() => metrics.stop());
      const m = metrics.metrics;
      const counts = metrics.counts;
      const clusterParts = await openClusterParts(config, parts.cluster, id, logger, (outcome) =>
        m.leaseRenewals.add(1, { outcome }),
      );
      if (clusterParts) opened.push(() => clusterParts.close());
      const epoch = clock.now() * 1000;
      const ownership =
        parts.ownership ??
        (clusterParts ? leaseOwnership(clusterParts.leases, id) : singleNodeOwnership(id, epoch));
      const engine = new Engine(
        store,
        registry,
        clock,
        ownership,
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
        (_commits, events, millis, failed) => {
          m.persistDuration.record(millis, { outcome: failed ? "failed" : "ok" });
          if (!failed) m.persistedEvents.add(events);
        },
        {
          activated: () => {
            counts.activations++;
          },
          passivated: () => {
            counts.passivations++;
          },
          turn: (kind, ok, millis) => {
            const key = `${kind}/${ok ? "ok" : "failed"}`;
            counts.turns.set(key, (counts.turns.get(key) ?? 0) + 1);
            m.turnDuration.record(millis);
          },
        },
      );
      engineRef = engine;
      const local = new LocalTwins(engine, {
        json: { maxBytes: limits.maxPayloadBytes, maxDepth: limits.maxJsonDepth },
        defaultTimeoutMs: limits.requestTimeout,
        maxQueryLimit: 1000,
        maxHistoryLimit: 10_000,
        maxTelemetryLimit: 100_000,
      });
      const bus = parts.bus ?? new InProcessBus();
      const transport: Transport = config.nats
        ? await NatsTransport.connect(natsOptions(config.nats, `doppel-node-${id}`))
        : bus.connect();
      opened.push(() => transport.close());

      let twins: TwinApi = local;
      let coordinator: ClusterCoordinator | undefined;
      let consumers: DeviceLink["durable"];
      let node: DoppelNode | undefined;
      if (clusterParts) {
        coordinator = new ClusterCoordinator({
          nodeId: id,
          shardCount: config.shards,
          membership: clusterParts.membership,
          leases: clusterParts.leases,
          leaseStore: clusterParts.leaseStore,
          catalog: engine.catalog,
          reminders: engine.reminders,
          consumers: {
            ownShards: async (shards) => consumers?.ownShards(shards),
            releaseShards: async (shards) => consumers?.releaseShards(shards),
          },
          logger,
          meta: () => ({ grpc: node?.grpcAddress ?? "", twins: engine.catalog.size, startedAt: clock.now() }),
          metaEveryMs: 2000,
          announce: transport,
          leaveGraceMs: 2 * (config.cluster?.heartbeat ?? parts.cluster?.heartbeatMs ?? 500),
        });
        twins = new Router(local, coordinator, transport, engine.shardOf, registry, clock, {
          defaultTimeoutMs: limits.requestTimeout,
          retryDelayMs: 25,
        });
      }
      const api = twins;
      engine.setCaller(
        async (target: TwinRef, command, args, chain, deadline): Promise<Json> =>
          (await api.invoke(target, command, args, { chain, deadline })).result,
      );
      engine.start();
      opened.push(() => engine.stop());

      const all = Array.from({ length: config.shards }, (_, shard) => shard);
      const owned = ownership.ownedShards();
      const devices = await startDeviceLink({
        config,
        nodeId: id,
        bus,
        twins,
        engine,
        logger,
        transport,
        shards: coordinator ? [] : owned === "all" ? all : owned,
      });
      consumers = devices.durable;
      devices.ingress.onRejected = (code) => m.rejectedInputs.add(1, { source: "device", code });
      node = new DoppelNode(
        parts.store === undefined,
        id,
        config,
        engine,
        twins,
        logger,
        bus,
        epoch,
        clock.now(),
      );
      node.#devices = devices;
      node.#coordinator = coordinator;
      node.#metrics = metrics;
      opened.length = 0; // from here on the node's stop() closes everything
      node.attach(metrics);
      node.attach({ stop: () => transport.close() });
      if (clusterParts) node.attach({ stop: () => clusterParts.close() });
      node.attach(devices);

      if (coordinator) {
        const rpc = serveNodeRpc({
          transport,
          placement: coordinator,
          local,
          shardOf: engine.shardOf,
          clock,
          logger,
        });
        const stopRelay = relayChanges(engine.feed, transport);
        node.attach({
          stop: async () => {
            stopRelay();
            await rpc.stop();
          },
        });
      }
      await node.#startServices(parts, clusterParts);
      if (coordinator) {
        try {
          await coordinator.start();
        } catch (error) {
          await node.stop();
          throw error;
        }
        node.attach(coordinator);
      }
      logger.info(
        {
          store: config.store.kind,
          devices: devices.kind,
          cluster: clusterParts?.name,
          types: registry.list().map((t) => t.name),
        },
        "node started",
      );
      return node;
    } catch (error) {
      await unwind();
      throw error;
    }
  }

  /** Metrics endpoint, gRPC gateway and demo fleet (each stops with the node). */
  async #startServices(parts: NodeParts, clusterParts: ClusterParts | undefined): Promise<void> {
    const { config, engine, logger } = this;
    try {
      const metrics = this.#metrics;
      if (metrics && config.metrics.listen !== false) await metrics.listen(config.metrics.listen);
      if (config.grpc.listen !== false) {
        const { startGateway } = await import("../grpc/server.ts");
        const gateway = await startGateway({
          api: this.twins,
          types: () => this.registry.list().map((type) => ({ name: type.name, commands: type.commandNames })),
          cluster: () => this.cluster(),
          rejected: (code) => metrics?.metrics.rejectedInputs.add(1, { source: "grpc", code }),
          listen: config.grpc.listen,
          maxMessageBytes: config.grpc.maxMessageBytes,
          logger,
          clock: engine.clock,
        });
        this.attach(gateway);
        this.#grpcAddress = gateway.address;
      }
      if (config.demo && parts.devices && config.demo.devices > 0) {
        const fleetTransport = await this.#devices.connectDevice(`doppel-demo-${this.id}`);
        this.attach({ stop: () => fleetTransport.close() });
        const fleet = new Fleet({
          transport: fleetTransport,
          models: parts.devices.filter((model) => this.registry.has(model.type)),
          devices: config.demo.devices,
          intervalMs: config.demo.interval,
          ...(clusterParts ? { idPrefix: `${this.id}-` } : {}),
          onError: (error) => logger.debug({ code: error.code, err: error.message }, "demo device error"),
        });
        this.attach(fleet);
        this.#fleet = fleet;
        // The fleet starts once the node serves (its devices sync at once).
        void fleet.start();
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** The cluster as this node sees it (a cluster of one when it runs alone). */
  async cluster(): Promise<ClusterView> {
    const coordinator = this.#coordinator;
    if (!coordinator) {
      return soloClusterView({
        nodeId: this.id,
        shardCount: this.config.shards,
        epoch: this.epoch,
        grpcAddress: this.#grpcAddress ?? "",
        startedAt: this.startedAt,
        residentTwins: this.engine.catalog.size,
        now: this.engine.clock.now(),
      });
    }
    const status = await coordinator.status();
    const assignedCount = new Map<string, number>();
    for (const node of status.assignment) assignedCount.set(node, (assignedCount.get(node) ?? 0) + 1);
    const ownedCount = new Map<string, number>();
    for (const holder of status.holders.values())
      ownedCount.set(holder.node, (ownedCount.get(holder.node) ?? 0) + 1);
    return {
      name: status.cluster,
      shardCount: status.shardCount,
      self: status.self,
      nodes: status.members.map((member) => ({
        id: member.nodeId,
        grpcAddress: typeof member.meta["grpc"] === "string" ? member.meta["grpc"] : "",
        startedAt: member.startedAt,
        lastHeartbeat: member.lastHeartbeat,
        residentTwins: typeof member.meta["twins"] === "number" ? member.meta["twins"] : 0,
        shardsOwned: ownedCount.get(member.nodeId) ?? 0,
        shardsAssigned: assignedCount.get(member.nodeId) ?? 0,
      })),
      shards: Array.from({ length: status.shardCount }, (_, shard) => {
        const holder = status.holders.get(shard);
        return {
          shard,
          assignedTo: status.assignment[shard] ?? "",
          holder: holder?.node ?? "",
          epoch: holder?.epoch ?? 0,
          expiresInMs: holder?.expiresInMs ?? 0,
        };
      }),
    };
  }

  /** The `host:port` the gRPC gateway listens on, when it runs. */
  get grpcAddress(): string | undefined {
    return this.#grpcAddress;
  }

  /** The `host:port` of the Prometheus endpoint, when it runs. */
  get metricsAddress(): string | undefined {
    return this.#metrics?.address;
  }

  /**
   * The node's device side: its transport (NATS or in-process), ingress counters, the durable
   * JetStream consumer (`devices.durable.ownShards` / `releaseShards`) and device command counters.
   */
  get devices(): DeviceLink {
    return this.#devices;
  }

  /** The cluster coordinator, when the node is a cluster member. */
  get coordinator(): ClusterCoordinator | undefined {
    return this.#coordinator;
  }

  /** The demo fleet, when one runs. */
  get fleet(): Fleet | undefined {
    return this.#fleet;
  }

  /** Adds a service that stops with the node (stopped in reverse order of adding). */
  attach(service: NodeService): void {
    this.#services.push(service);
  }

  /**
   * Stops gracefully: services in reverse order of start (gateway first; a cluster member leaves
   * and hands its shards over, draining their twins), then every remaining twin is passivated
   * (persisting what is pending) and the store closed if the node opened it.
   */
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
