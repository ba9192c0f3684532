/**
 * A Doppel node: one process running twins. This is wiring only: `DoppelNode.start` compiles the
 * configuration and then runs the named steps below, in order; each part lives in its subsystem.
 * The same code runs alone on the embedded store or as a cluster member (`cluster` in the
 * configuration): then a coordinator places shards by consistent hashing over the live members,
 * leases fence every write, and a router sends each call to the twin's owner.
 */
import { randomBytes } from "node:crypto";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import type { Transport } from "../../cluster/transport/transport.ts";
import { Admission } from "../core/admission.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import { type ClusterView, soloClusterView } from "../core/cluster-view.ts";
import { refKey, type TwinRef } from "../core/ids.ts";
import type { Json } from "../core/json.ts";
import { type ShardOwnership, singleNodeOwnership } from "../core/ownership.ts";
import { present } from "../core/present.ts";
import type { TwinClass } from "../core/twin.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { DeviceAuthService } from "../devices/auth/auth-callout.ts";
import type { RevocationList } from "../devices/auth/cloud-revocation.ts";
import type { DeviceCredentials } from "../devices/auth/device-credentials.ts";
import type { CoapIngress } from "../devices/coap/coap-ingress.ts";
import { type DeviceLink, startDeviceLink } from "../devices/device-link.ts";
import { edgeInboxPrefix } from "../devices/edge/edge-subjects.ts";
import type { RevocationFeed } from "../devices/edge/revocation-feed.ts";
import type { DeviceCommandStats } from "../devices/egress/device-commands.ts";
import type { DeviceIngress } from "../devices/ingress/device-ingress.ts";
import type { QueuedCommandCounts } from "../engine/command-delivery.ts";
import type { Engine } from "../engine/engine.ts";
import type { LocalTwins } from "../engine/local-twins.ts";
import type { TwinRegistry } from "../engine/twin-type.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import {
  type DeviceAuthCounts,
  type EdgeCounts,
  type GaugeSources,
  NodeMetrics,
} from "../observability/metrics.ts";
import { installTracing } from "../observability/tracing.ts";
import type { EventStore } from "../persistence/event-store.ts";
import type { CloudReplication } from "../replication/cloud-replication.ts";
import type { EdgeLogPublisher } from "../replication/edge-log.ts";
import type { SourceRegistrar } from "../replication/source-registrar.ts";
import { relayChanges } from "../routing/change-relay.ts";
import { clusterViewOf } from "../routing/cluster-view.ts";
import { ClusterCoordinator } from "../routing/coordinator.ts";
import { EdgeRoutedTwins } from "../routing/edge-rpc.ts";
import { leaseOwnership } from "../routing/lease-ownership.ts";
import { serveNodeRpc } from "../routing/node-rpc.ts";
import { Router } from "../routing/router.ts";
import type { DeviceModel } from "../sim/device-model.ts";
import type { Fleet } from "../sim/fleet.ts";
import type { HttpDeviceStats } from "../web/device-routes.ts";
import type { WebExtension, WebServer } from "../web/server.ts";
import { type ClusterParts, type InProcessCluster, openClusterParts } from "./cluster-parts.ts";
import { deviceCredentialsPath, jsonLimits, natsConnection, natsDeviceSettings } from "./device-settings.ts";
import type { DeviceListenerParts } from "./durable-report-options.ts";
import { createEngine, localTwins, registerTwins } from "./engine-setup.ts";
import type { GatewaySecurityParts } from "./grpc-security.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";
import { openStore } from "./stores.ts";

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
  /** What else the HTTP listener serves (the operator console), registered after the API routes. */
  readonly httpExtensions?: readonly WebExtension[];
  /** A thick edge's store-and-forward state, for the edge gauges on `/metrics` (edge-node.ts). */
  readonly edgeStatus?: () => Readonly<EdgeCounts> | undefined;
  /** A thick edge's node: the cloud's device revocations the edge learnt, refused by its callout. */
  readonly cloudRevocations?: RevocationList;
  /**
   * A thick edge's node: the twin types that run in the cloud. The node runs none of them, but its
   * device listeners (CoAP, HTTP) take their devices' reports as they take its own types': checked
   * against the type's schema and published on the device's subject, which the edge stream takes
   * and forwards, as for a NATS device.
   */
  readonly forwardedTwins?: readonly TwinClass[];
}

/** Something that runs beside the engine and stops with the node (gateway, ingress, demo fleet). */
export interface NodeService {
  stop(): Promise<void>;
}

/** What the start steps have built so far (each step adds its part). */
interface Wiring {
  readonly config: NodeConfig;
  readonly id: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly bus: InProcessBus;
  readonly store: EventStore;
  readonly metrics: NodeMetrics;
  readonly cluster: ClusterParts | undefined;
  readonly engine: Engine;
  readonly local: LocalTwins;
  readonly transport: Transport;
  readonly coordinator: ClusterCoordinator | undefined;
  readonly twins: TwinApi;
  readonly admission: Admission;
}

/** The thick-edge replication parts a node reports on `/metrics` ({@link DoppelNode.reportReplication}). */
export interface ReplicationParts {
  readonly cloud?: Pick<CloudReplication, "status"> | undefined;
  readonly edgeLog?: Pick<EdgeLogPublisher, "published" | "pending"> | undefined;
}

export class DoppelNode {
  readonly #services: NodeService[] = [];
  #stopped = false;
  #fleet: Fleet | undefined;
  #grpcAddress: string | undefined;
  #coap: CoapIngress | undefined;
  #listenerParts: Promise<DeviceListenerParts> | undefined;
  /** The registry of the device listeners: the node's twin types and, at a thick edge, the forwarded ones. */
  #listenerRegistry: TwinRegistry | undefined;
  #grpcSecurity: string | undefined;
  #securityParts: GatewaySecurityParts | undefined;
  #httpSecurity: string | undefined;
  #http: WebServer | undefined;
  #httpDevices: HttpDeviceStats | undefined;
  #httpExtensions: readonly WebExtension[] = [];
  #devices!: DeviceLink;
  #coordinator: ClusterCoordinator | undefined;
  #metrics: NodeMetrics | undefined;
  #admission!: Admission;
  #replication: CloudReplication | undefined;
  /** Replication parts run by the embedding code, on /metrics ({@link DoppelNode.reportReplication}). */
  #reported: ReplicationParts = {};

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

  /**
   * Puts thick-edge replication parts run beside this node on its `/metrics`: a cloud's
   * `CloudReplication` (`doppel_edge_replication_*`; the node's own, when it runs one, is there
   * already) and an edge's `EdgeLogPublisher` (`doppel_edge_log_*`). The parts stay the caller's
   * to start and stop.
   */
  reportReplication(parts: ReplicationParts): void {
    this.#reported = { ...this.#reported, ...parts };
  }

  /** The twin types this node runs. */
  get registry() {
    return this.engine.registry;
  }

  /** The auth callout service checking device credentials (`nats.deviceAuth`), if configured. */
  get deviceAuth(): DeviceAuthService | undefined {
    return this.#devices.auth;
  }

  /** The auth callout's reader of the device credentials file, when this node runs the callout. */
  get deviceCredentials(): DeviceCredentials | undefined {
    return this.#devices.credentials;
  }

  /** The node's device ingress (counters of accepted and refused device messages). */
  get ingress(): DeviceIngress {
    return this.#devices.ingress;
  }

  /**
   * Starts a node. Fails with `InvalidArgument` for bad configuration or twin classes, and with
   * `Unavailable` for servers it cannot reach; whatever it opened before failing is closed again.
   */
  static async start(input: NodeConfigInput | NodeConfig, parts: NodeParts): Promise<DoppelNode> {
    const config = compileConfig(input);
    const id = config.nodeId ?? `node-${randomBytes(4).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    if (config.tracing.enabled) installTracing(config.tracing.exporter === "console" ? "console" : undefined);
    const registry = registerTwins(parts.twins, config);
    const clock = parts.clock ?? SystemClock;
    const epoch = clock.now() * 1000;

    // Everything opened from here on is closed again if a later step fails.
    const opened: (() => Promise<void>)[] = [];
    const closeOnFailure = async () => {
      for (const close of opened.reverse()) await close().catch(() => undefined);
    };
    let node: DoppelNode | undefined;
    try {
      const store = parts.store ?? (await openStore(config, logger));
      if (parts.store === undefined) opened.push(() => store.close());
      let engineRef: Engine | undefined;
      const admission = new Admission(clock, config.admission);
      let devicesRef: DeviceLink | undefined;
      const metrics = startMetrics(
        config,
        id,
        () => engineRef,
        admission,
        () => devicesRef?.auth?.stats,
        () => node?.coap?.gauge(),
        () => node?.httpDevices && { ...node.httpDevices },
        () => deviceCommandCounts(devicesRef?.commands, engineRef?.queuedCommands),
        parts.edgeStatus,
        () => (node ? { ...node.#reported, cloud: node.#reported.cloud ?? node.#replication } : {}),
      );
      opened.push(() => metrics.stop());
      const cluster = await openClusterParts(config, parts.cluster, id, logger, (outcome) =>
        metrics.metrics.leaseRenewals.add(1, { outcome }),
      );
      if (cluster) opened.push(() => cluster.close());
      const ownership =
        parts.ownership ?? (cluster ? leaseOwnership(cluster.leases, id) : singleNodeOwnership(id, epoch));
      const engine = createEngine({ config, nodeId: id, store, registry, clock, ownership, metrics, logger });
      engineRef = engine;
      const local = localTwins(engine, config);
      const bus = parts.bus ?? new InProcessBus();
      const transport = await connectNodeTransport(config, id, bus);
      opened.push(() => transport.close());
      const coordinator = cluster
        ? createCoordinator(
            config,
            id,
            cluster,
            engine,
            transport,
            logger,
            parts,
            () => node?.grpcAddress ?? "",
          )
        : undefined;
      // Commands to a thick-edge twin (edge-owned in this store) go down to its edge.
      const twins = new EdgeRoutedTwins(
        coordinator ? routeTwins(local, coordinator.coordinator, transport, config, engine) : local,
        transport,
        clock,
        { defaultTimeoutMs: config.limits.requestTimeout },
      );
      const wiring: Wiring = {
        config,
        id,
        logger,
        clock,
        bus,
        store,
        metrics,
        cluster,
        engine,
        local,
        transport,
        coordinator: coordinator?.coordinator,
        twins,
        admission,
      };
      connectTwinCalls(engine, twins);
      engine.start();
      opened.push(() => engine.stop());
      const devices = await startDevices(wiring, ownership, parts.cloudRevocations);
      devicesRef = devices;
      coordinator?.setConsumers(devices);
      const replication = await startEdgeReplication(wiring);
      if (replication) opened.push(() => replication.stop());
      const registrar = await startSourceRegistrar(wiring);
      if (registrar) opened.push(() => registrar.stop());
      const revocationFeed = await startRevocationFeed(wiring);
      if (revocationFeed) opened.push(() => revocationFeed.stop());

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
      if (parts.forwardedTwins?.length)
        node.#listenerRegistry = registerTwins([...parts.twins, ...parts.forwardedTwins], config);
      node.#httpExtensions = parts.httpExtensions ?? [];
      node.#coordinator = wiring.coordinator;
      node.#metrics = metrics;
      node.#admission = admission;
      opened.length = 0; // from here on the node's stop() closes everything, in reverse order of attach
      node.attach(metrics);
      node.attach({ stop: () => transport.close() });
      if (cluster) node.attach({ stop: () => cluster.close() });
      node.attach(devices);
      if (replication) {
        node.attach(replication);
        node.#replication = replication;
      }
      if (registrar) node.attach(registrar);
      if (revocationFeed) node.attach(revocationFeed);
      if (wiring.coordinator) node.attach(serveNodeCalls(wiring));
      await node.#startServices(parts, wiring);
      if (wiring.coordinator) await node.#joinCluster(wiring.coordinator);
      logger.info(
        {
          store: config.store.kind,
          devices: devices.kind,
          cluster: cluster?.name,
          types: registry.list().map((t) => t.name),
        },
        "node started",
      );
      return node;
    } catch (error) {
      await closeOnFailure();
      throw error;
    }
  }

  /** Metrics endpoint, gRPC gateway and demo fleet (each stops with the node). */
  async #startServices(parts: NodeParts, wiring: Wiring): Promise<void> {
    try {
      await this.#serveMetrics();
      await this.#serveGrpc();
      await this.#serveCoap(wiring);
      await this.#serveHttp(wiring);
      await this.#runDemoFleet(parts, wiring);
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  async #serveMetrics(): Promise<void> {
    const listen = this.config.metrics.listen;
    if (this.#metrics && listen !== false) await this.#metrics.listen(listen);
  }

  /** The security of both service listeners, built once (one set of keys and rate buckets). */
  async #security(): Promise<GatewaySecurityParts> {
    if (this.#securityParts === undefined) {
      const { gatewaySecurity } = await import("./grpc-security.ts");
      this.#securityParts = gatewaySecurity(this.config, this.engine.clock, this.logger, this.#metrics);
    }
    return this.#securityParts;
  }

  /** The twin types as the service listeners list them. */
  #typeInfos() {
    return this.registry.list().map((type) => ({ name: type.name, commands: type.commandNames }));
  }

  async #serveGrpc(): Promise<void> {
    const { config, logger } = this;
    if (config.grpc.listen === false) return;
    const { startGateway } = await import("../grpc/server.ts");
    const secured = await this.#security();
    this.#grpcSecurity = secured.summary;
    const gateway = await startGateway({
      ...(secured.security ? { security: secured.security } : {}),
      ...(secured.tls ? { tls: secured.tls } : {}),
      api: this.twins,
      types: () => this.#typeInfos(),
      cluster: () => this.cluster(),
      rejected: (code) => this.#metrics?.metrics.rejectedInputs.add(1, { source: "grpc", code }),
      listen: config.grpc.listen,
      maxMessageBytes: config.grpc.maxMessageBytes,
      logger,
      clock: this.engine.clock,
      admission: this.#admission,
    });
    this.attach(gateway);
    this.#grpcAddress = gateway.address;
  }

  /**
   * What the request/response device listeners (CoAP, HTTP) share, built once; the credentials
   * reader is the auth callout's when the node runs it (one reader of the file per node).
   */
  #deviceListenerParts(wiring: Wiring): Promise<DeviceListenerParts> {
    this.#listenerParts ??= this.#deviceCredentials().then((credentials) => ({
      config: this.config,
      transport: this.#devices.transport,
      registry: this.#listenerRegistry ?? this.registry,
      admission: this.#admission,
      clock: wiring.clock,
      deviceRate: this.#devices.deviceRate,
      credentials,
      // A thick edge's node consumes only its own types' reports (the edge streams take the rest).
      ...(this.config.edge?.twins
        ? {
            ingestedHere: (type: string, channel: string) =>
              channel === "reported" && this.registry.has(type),
          }
        : {}),
    }));
    return this.#listenerParts;
  }

  async #deviceCredentials(): Promise<DeviceCredentials> {
    if (this.#devices.credentials) return this.#devices.credentials;
    const { DeviceCredentials } = await import("../devices/auth/device-credentials.ts");
    return new DeviceCredentials(deviceCredentialsPath(this.config));
  }

  async #serveCoap(wiring: Wiring): Promise<void> {
    if (!this.config.coap) return;
    const { startCoapListener } = await import("./coap-listener.ts");
    const coap = await startCoapListener({
      ...(await this.#deviceListenerParts(wiring)),
      logger: this.logger,
    });
    if (coap) {
      this.attach(coap);
      this.#coap = coap;
    }
  }

  /** The CoAP listener (`coap` in the configuration): its address, counters and observers. */
  get coap(): CoapIngress | undefined {
    return this.#coap;
  }

  async #serveHttp(wiring: Wiring): Promise<void> {
    const { config, logger } = this;
    if (config.http.listen === false) return;
    const { startWebServer } = await import("../web/server.ts");
    const { watchModule } = await import("../web/watch.ts");
    const { consoleExtension } = await import("../web/console.ts");
    const { httpDevices } = await import("./http-devices.ts");
    const secured = await this.#security();
    this.#httpSecurity = secured.http.summary;
    const devices = await httpDevices({
      ...(await this.#deviceListenerParts(wiring)),
      listen: config.http.listen,
      servicesAuthenticated: secured.http.security !== undefined,
    });
    this.#httpDevices = devices.stats;
    const server = await startWebServer(
      {
        ...(secured.http.security ? { security: secured.http.security } : {}),
        ...(secured.tls ? { tls: secured.tls } : {}),
        api: this.twins,
        types: () => this.#typeInfos(),
        describeType: (name) => {
          if (!this.registry.has(name)) return undefined;
          const type = this.registry.get(name);
          const schemas = type.describe();
          return {
            name: type.name,
            commands: type.commandNames,
            commandSchemas: schemas.commands,
            ...present({ reportedSchema: schemas.reported, desiredSchema: schemas.desired }),
          };
        },
        cluster: () => this.cluster(),
        rejected: (code) => this.#metrics?.metrics.rejectedInputs.add(1, { source: "http", code }),
        listen: config.http.listen,
        maxBodyBytes: config.http.maxBodyBytes,
        watchBufferLimit: config.http.watchBufferLimit,
        logger,
        clock: this.engine.clock,
        admission: this.#admission,
        // The operator console at `/`, then what the embedder adds.
        extensions: [consoleExtension(), ...this.#httpExtensions],
      },
      [watchModule(), devices.module],
    );
    this.attach(server);
    this.#http = server;
  }

  async #runDemoFleet(parts: NodeParts, wiring: Wiring): Promise<void> {
    const demo = this.config.demo;
    if (!demo || !parts.devices || demo.devices === 0) return;
    const { Fleet } = await import("../sim/fleet.ts");
    const fleetTransport = await this.#devices.connectDevice(`doppel-demo-${this.id}`);
    this.attach({ stop: () => fleetTransport.close() });
    const fleet = new Fleet({
      transport: fleetTransport,
      models: parts.devices.filter((model) => this.registry.has(model.type)),
      devices: demo.devices,
      intervalMs: demo.interval,
      ...(wiring.cluster ? { idPrefix: `${this.id}-` } : {}),
      onError: (error) => this.logger.debug({ code: error.code, err: error.message }, "demo device error"),
    });
    this.attach(fleet);
    this.#fleet = fleet;
    // The fleet starts once the node serves (its devices sync at once).
    void fleet.start();
  }

  /** Joins the membership and takes this node's shards; a node that cannot join stops again. */
  async #joinCluster(coordinator: ClusterCoordinator): Promise<void> {
    try {
      await coordinator.start();
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.attach(coordinator);
  }

  /** The cluster as this node sees it (a cluster of one when it runs alone). */
  async cluster(): Promise<ClusterView> {
    const coordinator = this.#coordinator;
    if (coordinator) return clusterViewOf(await coordinator.status());
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

  /** How the gRPC gateway is protected ("TLS, API keys from keys.json (2 active)"), when it runs. */
  get grpcSecurity(): string | undefined {
    return this.#grpcSecurity;
  }

  /** How the HTTP listener is protected, when it runs. */
  get httpSecurity(): string | undefined {
    return this.#httpSecurity;
  }

  /** The HTTP listener's `host:port`, when it runs. */
  get httpAddress(): string | undefined {
    return this.#http?.address;
  }

  /** The HTTP listener's base URL (`http://127.0.0.1:8080`), when it runs. */
  /** The HTTP device routes' counters (`doppel_http_devices_total`), when the node serves HTTP. */
  get httpDevices(): HttpDeviceStats | undefined {
    return this.#httpDevices;
  }

  get httpUrl(): string | undefined {
    return this.#http?.url;
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

  /** The node's admission control (counters of admitted and refused work per class). */
  get admission(): Admission {
    return this.#admission;
  }

  /** What the node applies of thick edges' logs (a cloud node on NATS; `nats.replicateEdges`). */
  get replication(): CloudReplication | undefined {
    return this.#replication;
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

/** `doppel_device_commands_total`'s counts: the device transport's attempts and the twins' queues. */
function deviceCommandCounts(
  sent: DeviceCommandStats | undefined,
  queued: QueuedCommandCounts | undefined,
): Record<string, number> | undefined {
  if (!sent && !queued) return undefined;
  return {
    ...(sent && {
      sent: sent.sent,
      answered: sent.answered,
      offline: sent.offline,
      timed_out: sent.timedOut,
      not_sent: sent.notSent,
      failed: sent.failed,
    }),
    ...queued,
  };
}

/** Metrics first: every part reports into them. Gauges read the engine at scrape time. */
function startMetrics(
  config: NodeConfig,
  id: string,
  engine: () => Engine | undefined,
  admission: Admission,
  deviceAuth: () => DeviceAuthCounts | undefined,
  coap: NonNullable<GaugeSources["coap"]>,
  httpDevices: NonNullable<GaugeSources["httpDevices"]>,
  deviceCommands: NonNullable<GaugeSources["deviceCommands"]>,
  edge: GaugeSources["edge"],
  replication: () => ReplicationParts,
): NodeMetrics {
  return new NodeMetrics(id, {
    ...present({ edge }),
    admission: (workClass) => admission.stats(workClass),
    replication: () => replication().cloud?.status.edges,
    edgeLog: () => {
      const log = replication().edgeLog;
      return log && { published: log.published, pending: log.pending };
    },
    deviceAuth,
    coap,
    httpDevices,
    deviceCommands,
    residentTwins: () => engine()?.catalog.size ?? 0,
    mailboxDepth: () => engine()?.catalog.mailboxDepth() ?? 0,
    shardsOwned: () => {
      const owned = engine()?.ownership.ownedShards() ?? [];
      return owned === "all" ? config.shards : owned.length;
    },
  });
}

/**
 * A cloud node on NATS applies thick edges' logs to its store (docs/edge.md): the durable consumer
 * is shared by every cloud node (a work queue), and the replicator's twin+seq conditions make
 * their concurrent applies safe. Off on an edge node and with `nats.replicateEdges: false`.
 */
async function startEdgeReplication(wiring: Wiring): Promise<CloudReplication | undefined> {
  const { config, engine } = wiring;
  if (!config.nats || config.edge || config.nats.replicateEdges === false) return undefined;
  const { CloudReplication } = await import("../replication/cloud-replication.ts");
  const { NatsTransport } = await import("../../cluster/transport/nats.ts");
  if (!(wiring.transport instanceof NatsTransport)) return undefined;
  const replication = new CloudReplication(wiring.transport.connection, wiring.store, {
    shardOf: (ref) => engine.shardOf(ref.type, ref.id),
    // What it writes goes to the change feed: WatchTwin (and, in a cluster, the other nodes' watchers).
    onApplied: (change) => engine.feed.publish(refKey(change.ref), change),
    logger: wiring.logger,
    node: wiring.id,
  });
  await replication.start();
  return replication;
}

/**
 * A cloud node on NATS registers edges' streams as sources of its streams when they ask
 * (replication/source-registrar.ts), so edges need no right to the cloud's JetStream API. Off on
 * an edge node (its server is the edge's, not the cloud's).
 */
async function startSourceRegistrar(wiring: Wiring): Promise<SourceRegistrar | undefined> {
  const { config } = wiring;
  if (!config.nats || config.edge) return undefined;
  const { SourceRegistrar } = await import("../replication/source-registrar.ts");
  const { NatsTransport } = await import("../../cluster/transport/nats.ts");
  if (!(wiring.transport instanceof NatsTransport)) return undefined;
  const registrar = new SourceRegistrar(wiring.transport.connection, {
    ingressStream: config.nats.stream.name,
    logger: wiring.logger,
  });
  await registrar.start();
  return registrar;
}

/**
 * A cloud node on NATS answers edges' requests for the cloud's device revocations
 * (devices/edge/revocation-feed.ts), so edges read them without a right to the cloud's JetStream
 * API. Off on an edge node.
 */
async function startRevocationFeed(wiring: Wiring): Promise<RevocationFeed | undefined> {
  if (!wiring.config.nats || wiring.config.edge) return undefined;
  const { RevocationFeed } = await import("../devices/edge/revocation-feed.ts");
  const { NatsTransport } = await import("../../cluster/transport/nats.ts");
  if (!(wiring.transport instanceof NatsTransport)) return undefined;
  const feed = new RevocationFeed(wiring.transport.connection, wiring.logger);
  await feed.start();
  return feed;
}

/** The node's own connection: NATS when configured, else the in-process bus. */
async function connectNodeTransport(config: NodeConfig, id: string, bus: InProcessBus): Promise<Transport> {
  if (!config.nats) return bus.connect();
  const { NatsTransport } = await import("../../cluster/transport/nats.ts");
  // An edge's node gets its answers under the edge's own subjects (devices/edge/hub-config.ts).
  return NatsTransport.connect({
    ...natsConnection(config.nats),
    name: `doppel-node-${id}`,
    ...(config.edge ? { inboxPrefix: edgeInboxPrefix(config.edge.name) } : {}),
  });
}

/**
 * The coordinator that places shards on the live members and moves their twins, reminders and
 * device consumers. Device consumers start after the coordinator exists, so it reaches them
 * through `setConsumers`.
 */
function createCoordinator(
  config: NodeConfig,
  id: string,
  cluster: ClusterParts,
  engine: Engine,
  transport: Transport,
  logger: Logger,
  parts: NodeParts,
  grpcAddress: () => string,
): { coordinator: ClusterCoordinator; setConsumers(devices: DeviceLink): void } {
  let consumers: DeviceLink["durable"];
  const coordinator = new ClusterCoordinator({
    nodeId: id,
    shardCount: config.shards,
    membership: cluster.membership,
    leases: cluster.leases,
    leaseStore: cluster.leaseStore,
    catalog: engine.catalog,
    reminders: engine.reminders,
    consumers: {
      ownShards: async (shards) => consumers?.ownShards(shards),
      releaseShards: async (shards) => consumers?.releaseShards(shards),
    },
    logger,
    meta: () => ({ grpc: grpcAddress(), twins: engine.catalog.size, startedAt: engine.clock.now() }),
    metaEveryMs: 2000,
    announce: transport,
    leaveGraceMs: 2 * (config.cluster?.heartbeat ?? parts.cluster?.heartbeatMs ?? 500),
  });
  return {
    coordinator,
    setConsumers(devices) {
      consumers = devices.durable;
    },
  };
}

/** A cluster member's twin API: every call goes to the twin's owner, retried while shards move. */
function routeTwins(
  local: LocalTwins,
  coordinator: ClusterCoordinator,
  transport: Transport,
  config: NodeConfig,
  engine: Engine,
): TwinApi {
  return new Router(local, coordinator, transport, engine.shardOf, engine.registry, engine.clock, {
    defaultTimeoutMs: config.limits.requestTimeout,
    retryDelayMs: 25,
  });
}

/** Twins call other twins through the node's (routed) API. */
function connectTwinCalls(engine: Engine, twins: TwinApi): void {
  engine.setCaller(
    async (target: TwinRef, command, args, call): Promise<Json> =>
      (await twins.invoke(target, command, args, call)).result,
  );
}

/** The device side: ingress (consuming the shards this node owns), desired pushes, device commands. */
function startDevices(
  wiring: Wiring,
  ownership: ShardOwnership,
  cloudRevocations: RevocationList | undefined,
): Promise<DeviceLink> {
  const { config } = wiring;
  const owned = ownership.ownedShards();
  const all = Array.from({ length: config.shards }, (_, shard) => shard);
  return startDeviceLink({
    json: jsonLimits(config),
    shardCount: config.shards,
    nats: natsDeviceSettings(config),
    nodeId: wiring.id,
    bus: wiring.bus,
    twins: wiring.twins,
    engine: wiring.engine,
    logger: wiring.logger,
    transport: wiring.transport,
    // A cluster member consumes the shards the coordinator gives it, once it holds their leases.
    shards: wiring.coordinator ? [] : owned === "all" ? all : owned,
    admission: wiring.admission,
    ...present({ deviceRate: config.limits.deviceRate, cloudRevocations }),
  }).then((devices) => {
    devices.ingress.onRejected = (code) =>
      wiring.metrics.metrics.rejectedInputs.add(1, { source: "device", code });
    devices.ingress.onRateLimited = () =>
      wiring.metrics.metrics.rateLimited.add(1, { source: "device", kind: "device" });
    devices.ingress.onDropped = (reason) => wiring.metrics.metrics.droppedReports.add(1, { reason });
    return devices;
  });
}

/** Calls from other nodes to the twins this node owns, and this node's changes for their watchers. */
function serveNodeCalls(wiring: Wiring): NodeService {
  const rpc = serveNodeRpc({
    transport: wiring.transport,
    placement: wiring.coordinator!,
    local: wiring.local,
    shardOf: wiring.engine.shardOf,
    clock: wiring.clock,
    logger: wiring.logger,
    admission: wiring.admission,
  });
  const stopRelay = relayChanges(wiring.engine.feed, wiring.transport);
  return {
    stop: async () => {
      stopRelay();
      await rpc.stop();
    },
  };
}
