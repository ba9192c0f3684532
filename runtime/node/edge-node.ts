/**
 * An edge node (docs/edge.md): beside the edge's leaf nats-server it keeps the store-and-forward
 * running — the edge stream devices' reports are stored in, its registration as a source of the
 * cloud's ingress stream, trimming of what the cloud stored, the outage counters on `/metrics` and
 * status answers for `doppel edge status`. Twins run in the cloud; desired state, `sync` and
 * commands cross the leaf link as core NATS.
 *
 * A thick edge (`edge.twins`) also runs a {@link DoppelNode} for those twin types on the embedded
 * store ({@link ThickEdge}): its ingress stream in the edge's domain takes their devices' reports,
 * the edge's log publisher replicates their committed events to the cloud and the edge RPC server
 * answers the commands the cloud routes down. The store-and-forward keeps running for the twin
 * modules' other types (its edge stream takes only their reports); the raw telemetry stream takes
 * every type's telemetry: the edge twins' is recorded in the node's telemetry store, and all of
 * it is reduced (per the type's `edge` declaration) and forwarded to the cloud.
 *
 * With `nats.deviceAuth` the edge node is its leaf server's auth callout service (written by
 * `leafServerConfig({ deviceAuth })`): devices at the edge are checked against the edge's own
 * device credentials file, so they authenticate during an outage too, and a device revoked in that
 * file is disconnected from the leaf server. A thick edge's node runs it (as any node with
 * `nats.deviceAuth` does, so its reports record the device as principal); a thin edge runs it here.
 * Either way the callout also refuses what the cloud revoked: the edge node copies the hub's
 * revocation stream into the edge's domain through the cloud's revocation feed, every tick while
 * the link is up (`EdgeRevocations`), reads its copy before the callout starts, and kicks a device
 * connected at the edge when a record revoking it arrives.
 */
import { randomBytes } from "node:crypto";
import type { NatsTransport } from "../../cluster/transport/nats.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import { type CompiledReduction, compileEdgeOptions } from "../core/edge-telemetry.ts";
import { FailedPrecondition, InvalidArgument, Unavailable } from "../core/errors.ts";
import { present } from "../core/present.ts";
import type { TwinClass } from "../core/twin.ts";
import type { DeviceAuthService } from "../devices/auth/auth-callout.ts";
import type { RevocationList } from "../devices/auth/cloud-revocation.ts";
import type { RunningDeviceAuth } from "../devices/auth/device-auth.ts";
import type { DeviceCredentials } from "../devices/auth/device-credentials.ts";
import type { CoapIngress } from "../devices/coap/coap-ingress.ts";
import { DesiredResync } from "../devices/edge/desired-resync.ts";
import { EdgeForwarder, type EdgeStatus } from "../devices/edge/edge-forwarder.ts";
import type { EdgeRevocations } from "../devices/edge/edge-revocations.ts";
import { edgeIngressTypes } from "../devices/edge/edge-stream.ts";
import { edgeInboxPrefix } from "../devices/edge/edge-subjects.ts";
import { replayWindowMs, TelemetryForwarder } from "../devices/edge/telemetry-forwarder.ts";
import { TelemetryReducer } from "../devices/edge/telemetry-reducer.ts";
import { streamInfoIfAny } from "../devices/ingress/stream-config.ts";
import { DeviceChannel } from "../devices/protocol.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import { NodeMetrics } from "../observability/metrics.ts";
import { EdgeLogPublisher } from "../replication/edge-log.ts";
import { serveEdgeRpc } from "../routing/edge-rpc.ts";
import type { NodeRpcServer } from "../routing/node-rpc.ts";
import { deviceAuthSettings, jsonLimits, natsConnection } from "./device-settings.ts";
import { DoppelNode } from "./node.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";

/** A thick edge's twins: their node, the publisher of their log and the server of routed commands. */
export interface ThickEdge {
  /** The node running the edge twin types (its `twins` API, gRPC and HTTP per the configuration). */
  readonly node: DoppelNode;
  readonly log: EdgeLogPublisher;
  readonly rpc: NodeRpcServer;
}

/** Which twin classes run at the edge and which types the store-and-forward takes. */
function splitTypes(
  config: NodeConfig,
  twins: readonly TwinClass[],
): { edgeTwins: TwinClass[] | undefined; forwarded: string[] | undefined; all: string[] | undefined } {
  const names = config.edge?.twins;
  if (!names) return { edgeTwins: undefined, forwarded: undefined, all: undefined };
  const known = twins.map((twin) => twin.type);
  const missing = names.filter((name) => !known.includes(name));
  if (missing.length > 0)
    throw new InvalidArgument(
      `edge.twins: ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not a type of the twin modules (${known.join(", ") || "none"}); load its module with --twins`,
      { field: "edge.twins" },
    );
  return {
    edgeTwins: twins.filter((twin) => names.includes(twin.type)),
    forwarded: known.filter((type) => !names.includes(type)),
    all: known,
  };
}

export class EdgeNode {
  readonly #transport: NatsTransport;
  readonly #metrics: NodeMetrics | undefined;
  readonly #auth: RunningDeviceAuth | undefined;
  readonly #coap: CoapIngress | undefined;
  readonly #windowTimer: NodeJS.Timeout;
  /** The cloud's device revocations the edge learnt (with `nats.deviceAuth`). */
  readonly revocations: EdgeRevocations | undefined;

  private constructor(
    readonly id: string,
    readonly config: NodeConfig,
    readonly logger: Logger,
    readonly forwarder: EdgeForwarder,
    /** The telemetry path: raw stream, reduction, forwarding into the edge stream. */
    readonly telemetry: TelemetryForwarder,
    /** Pushes desired state changed in the cloud during an outage once the link is back. */
    readonly desired: DesiredResync,
    /** A thick edge's twins (`edge.twins`), absent on a thin edge. */
    readonly thick: ThickEdge | undefined,
    transport: NatsTransport,
    metrics: NodeMetrics | undefined,
    auth: RunningDeviceAuth | undefined,
    coap: CoapIngress | undefined,
    revocations: EdgeRevocations | undefined,
  ) {
    this.revocations = revocations;
    this.#transport = transport;
    this.#metrics = metrics;
    this.#auth = auth;
    this.#coap = coap;
    this.#windowTimer = setInterval(() => {
      telemetry.closeDue().catch(() => undefined);
      telemetry
        .countDropped()
        .catch((error: unknown) => logger.warn({ err: String(error) }, "edge: cannot read the raw stream"));
    }, config.edge?.tick ?? 1000);
    this.#windowTimer.unref();
  }

  /**
   * Starts an edge node. Fails with `InvalidArgument` for configuration without `edge` and `nats`,
   * and when the edge's own NATS or JetStream cannot be reached (the cloud may be down: the edge
   * buffers and registers once the link is up). `twins` are the twin classes whose `edge`
   * declarations reduce their telemetry (an invalid one: `InvalidArgument`); telemetry of other
   * types is forwarded raw. `clock` drives the telemetry windows (a manual clock in tests).
   */
  static async start(
    input: NodeConfigInput | NodeConfig,
    parts: { logger?: Logger; twins?: readonly TwinClass[]; clock?: Clock } = {},
  ): Promise<EdgeNode> {
    const config = compileConfig(input);
    const { edgeTwins, forwarded, all } = splitTypes(config, parts.twins ?? []);
    const reductions = new Map<string, Map<string, CompiledReduction>>();
    for (const twin of parts.twins ?? []) reductions.set(twin.type, compileEdgeOptions(twin.type, twin.edge));
    const clock = parts.clock ?? SystemClock;
    const { edge, nats } = config;
    if (!edge || !nats) throw new Error("EdgeNode.start needs the edge and nats sections");
    const id = config.nodeId ?? `edge-${edge.name}-${randomBytes(3).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    const { NatsTransport } = await import("../../cluster/transport/nats.ts");
    // Answers to its requests across the link come back under its own doppel.edge.<edge>.>, which a
    // hub's per-edge user delivers to it (hub-config.ts).
    const transport = await NatsTransport.connect({
      ...natsConnection(nats),
      name: `doppel-edge-${id}`,
      inboxPrefix: edgeInboxPrefix(edge.name),
    });
    let forwarder: EdgeForwarder | undefined;
    let telemetry: TelemetryForwarder | undefined;
    let revocations: EdgeRevocations | undefined;
    /** What /metrics shows of the edge: the forwarder's status and the telemetry path's counts. */
    const edgeCounts = () =>
      forwarder && {
        ...forwarder.status,
        ...present({ telemetry: telemetry?.stats, revocations: revocations?.stats }),
      };
    const desired = new DesiredResync(transport.connection, {
      logger,
      timeoutMs: Math.max(2000, edge.tick),
      ...(edge.twins ? { localTypes: edge.twins } : {}),
    });
    desired.start();
    const authSettings = deviceAuthSettings(config);
    let auth: RunningDeviceAuth | undefined;
    let coap: CoapIngress | undefined;
    // A thick edge's node serves /metrics (with the edge gauges); a thin edge has its own endpoint.
    const metrics = edgeTwins
      ? undefined
      : new NodeMetrics(id, {
          residentTwins: () => 0,
          mailboxDepth: () => 0,
          shardsOwned: () => 0,
          edge: () => edgeCounts(),
          deviceAuth: () => auth?.service.stats,
          coap: () => coap?.gauge(),
        });
    let thick: ThickEdge | undefined;
    try {
      forwarder = new EdgeForwarder(transport.connection, {
        edge: edge.name,
        hubDomain: edge.hubDomain,
        stream: {
          name: edge.buffer.stream,
          maxBytes: edge.buffer.maxBytes,
          maxAgeMs: edge.buffer.maxAge,
          maxMsgSize: nats.stream.maxMsgSize,
          duplicateWindowMs: nats.stream.duplicateWindow,
          discard: edge.buffer.discard,
          ...(forwarded ? { types: forwarded } : {}),
        },
        tickMs: edge.tick,
        now: () => SystemClock.now(),
        logger,
        onStatus: (status) => {
          desired.linkIs(status.linkUp);
          // While the cloud answers: copy the revocations made there since the last copy.
          if (status.linkUp) void revocations?.copy(Math.max(2000, edge.tick));
        },
      });
      await refuseGivingTypesBack(transport, nats.stream.name, edge.twins);
      // The edge stream and the node's ingress stream first: they give up device telemetry to the raw stream.
      await forwarder.start();
      if (edgeTwins) await releaseTelemetrySubjects(transport, nats.stream.name);
      telemetry = new TelemetryForwarder(transport.connection, {
        raw: {
          name: edge.raw.stream,
          maxBytes: edge.raw.maxBytes,
          maxAgeMs: edge.raw.maxAge,
          maxMsgSize: nats.stream.maxMsgSize,
          duplicateWindowMs: nats.stream.duplicateWindow,
          // Every type's telemetry: a thick edge records its own twins' (below) and reduces all.
          ...(all ? { types: all } : {}),
        },
        ...(edge.twins
          ? {
              local: {
                types: new Set(edge.twins),
                record: (ref, samples) =>
                  thick
                    ? thick.node.twins.recordTelemetry(ref, samples)
                    : Promise.reject(new Unavailable("the edge's twins are starting")),
              },
            }
          : {}),
        reducer: new TelemetryReducer((type) => reductions.get(type), { graceMs: edge.windowGrace }),
        limits: jsonLimits(config),
        now: () => clock.now(),
        logger,
        replayMs: replayWindowMs(reductions, edge.windowGrace),
      });
      await telemetry.start();
      // Read back before any device is checked: what the cloud revoked stays refused at a restart.
      if (authSettings) revocations = await learnCloudRevocations(transport, edge.name, logger);
      // A thick edge's node runs the callout itself (its ingress then records device principals).
      if (authSettings && !edgeTwins) {
        const { startDeviceAuth } = await import("../devices/auth/device-auth.ts");
        const running = await startDeviceAuth(
          authSettings,
          id,
          logger,
          present({ cloudRevocations: revocations }),
        );
        auth = running;
        if (revocations)
          kickFrom(revocations, running.credentials, (device) => running.service.disconnect(device), logger);
      }
      // A thin edge serves CoAP here; a thick edge's node serves it (one listener, see coap).
      if (!edgeTwins) {
        const { startEdgeCoap } = await import("./edge-coap.ts");
        coap = await startEdgeCoap(config, {
          transport,
          twins: parts.twins ?? [],
          clock,
          logger,
          ...present({ cloudRevocations: revocations, credentials: auth?.credentials }),
        });
      }
      // After the forwarding streams gave up the edge twins' subjects: the node's ingress takes them.
      if (edgeTwins) {
        thick = await startThickEdge(config, {
          id,
          logger,
          clock,
          twins: edgeTwins,
          forwardedTwins: (parts.twins ?? []).filter((twin) => !edgeTwins.includes(twin)),
          transport,
          status: () => edgeCounts(),
          ...present({ cloudRevocations: revocations }),
        });
        const node = thick.node;
        if (revocations && node.deviceAuth && node.deviceCredentials)
          kickFrom(
            revocations,
            node.deviceCredentials,
            (device) => node.deviceAuth!.disconnect(device),
            logger,
          );
      }
      if (metrics && config.metrics.listen !== false) await metrics.listen(config.metrics.listen);
    } catch (error) {
      await stopThickEdge(thick).catch(() => undefined);
      await coap?.stop().catch(() => undefined);
      await auth?.stop().catch(() => undefined);
      // The forwarder first: its ticks copy the revocations.
      await forwarder?.stop().catch(() => undefined);
      await revocations?.stop().catch(() => undefined);
      await telemetry?.stop().catch(() => undefined);
      await desired.stop().catch(() => undefined);
      await metrics?.stop().catch(() => undefined);
      await transport.close();
      throw error;
    }
    logger.info(
      {
        edge: edge.name,
        hubDomain: edge.hubDomain,
        twins: edge.twins,
        deviceAuth: authSettings !== undefined,
      },
      "edge node started",
    );
    return new EdgeNode(
      id,
      config,
      logger,
      forwarder,
      telemetry,
      desired,
      thick,
      transport,
      metrics,
      auth,
      coap,
      revocations,
    );
  }

  /** The auth callout service checking the edge's devices (`nats.deviceAuth`), if configured. */
  get deviceAuth(): DeviceAuthService | undefined {
    return this.thick ? this.thick.node.deviceAuth : this.#auth?.service;
  }

  /**
   * The CoAP listener (`coap` in the configuration): a thin edge's own (edge-coap.ts), a thick
   * edge's node's.
   */
  get coap(): CoapIngress | undefined {
    return this.thick ? this.thick.node.coap : this.#coap;
  }

  /** The edge's store-and-forward state (refreshed every `edge.tick`). */
  get status(): EdgeStatus {
    return this.forwarder.status;
  }

  /** The `host:port` of the Prometheus endpoint, when it runs. */
  get metricsAddress(): string | undefined {
    return this.thick ? this.thick.node.metricsAddress : this.#metrics?.address;
  }

  async stop(): Promise<void> {
    clearInterval(this.#windowTimer);
    await stopThickEdge(this.thick);
    await this.#coap?.stop();
    await this.#auth?.stop();
    // The forwarder first: its ticks copy the revocations.
    await this.forwarder.stop();
    await this.revocations?.stop();
    await this.telemetry.stop();
    await this.desired.stop();
    await this.#metrics?.stop();
    await this.#transport.close();
    this.logger.info("edge node stopped");
  }
}

/** Starts following the cloud's revocations (the edge's copy of the hub's stream, read to its end first). */
async function learnCloudRevocations(
  transport: NatsTransport,
  edge: string,
  logger: Logger,
): Promise<EdgeRevocations> {
  const { EdgeRevocations } = await import("../devices/edge/edge-revocations.ts");
  return EdgeRevocations.start({ connection: transport.connection, edge, logger });
}

/**
 * Once the callout runs: kicks the devices the learnt revocations refuse that are still connected
 * (from before a restart), and each one a later record refuses. `credentials` is the callout's
 * reader of the edge's own file (one reader per node): it says which credential a device holds here.
 */
function kickFrom(
  revocations: EdgeRevocations,
  credentials: DeviceCredentials,
  disconnect: (device: string) => Promise<number>,
  logger: Logger,
): void {
  revocations.kickWith(credentials, disconnect);
  revocations
    .kickRevoked()
    .catch((error: unknown) =>
      logger.warn({ err: error }, "edge: could not disconnect devices the cloud revoked"),
    );
}

/**
 * A type that ran at this edge stays the edge's: the cloud's copies of its twins are edge-owned
 * (read-only there) for good, so the edge would forward reports the cloud refuses. Refuses
 * (`FailedPrecondition`) to start when the node ingress stream in the edge's domain takes a type
 * `twins` no longer lists; adding types is fine.
 */
async function refuseGivingTypesBack(
  transport: NatsTransport,
  ingress: string,
  twins: readonly string[] | undefined,
): Promise<void> {
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const taken = await edgeIngressTypes(await jetstreamManager(transport.connection), ingress);
  const dropped = (taken ?? []).filter((type) => !twins?.includes(type));
  if (dropped.length === 0) return;
  const what = dropped.includes("*") ? "every twin type (a node ran on this server)" : dropped.join(", ");
  throw new FailedPrecondition(
    `the edge's stream ${ingress} takes ${what}, which edge.twins ${twins ? `(${twins.join(", ")}) does not list` : "is not set for"}: ` +
      "twins that ran at this edge stay its own (read-only in the cloud), so their reports cannot be forwarded instead; keep those types in --edge-twins",
    { reason: "edge-types-dropped", types: dropped },
  );
}

/**
 * A thick edge's node ingress stream takes its twins' reports only; their telemetry goes to the
 * raw telemetry stream (recorded at the edge and reduced for the cloud there). An ingress stream
 * made before that (by an older edge node) still takes the telemetry subjects: this gives them
 * up, so the raw stream can take them (what it already holds is still consumed by the node).
 */
async function releaseTelemetrySubjects(transport: NatsTransport, ingress: string): Promise<void> {
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const jsm = await jetstreamManager(transport.connection);
  const info = await streamInfoIfAny(jsm, ingress);
  const subjects = info?.config.subjects ?? [];
  const reports = subjects.filter((subject) => !subject.endsWith(`.${DeviceChannel.Telemetry}`));
  if (!info || reports.length === subjects.length) return;
  await jsm.streams.update(ingress, { ...info.config, subjects: reports });
}

/**
 * Starts a thick edge's twins: a {@link DoppelNode} for `twins` on the edge's NATS and embedded
 * store (its ingress stream, in the edge's domain, takes only their subjects), the publisher of
 * their committed batches into the edge's log and the server of commands routed down.
 */
async function startThickEdge(
  config: NodeConfig,
  parts: {
    readonly id: string;
    readonly logger: Logger;
    readonly clock: Clock;
    readonly twins: readonly TwinClass[];
    /** The loaded twin types that run in the cloud (their devices report at the node's CoAP too). */
    readonly forwardedTwins: readonly TwinClass[];
    readonly transport: NatsTransport;
    readonly status: () => EdgeStatus | undefined;
    readonly cloudRevocations?: RevocationList;
  },
): Promise<ThickEdge> {
  const edge = config.edge!;
  const types = edge.twins!;
  const { logger, clock, transport } = parts;
  const node = await DoppelNode.start(
    { ...config, nodeId: parts.id },
    {
      twins: parts.twins,
      logger,
      clock,
      edgeStatus: parts.status,
      forwardedTwins: parts.forwardedTwins,
      ...present({ cloudRevocations: parts.cloudRevocations }),
    },
  );
  let log: EdgeLogPublisher | undefined;
  try {
    log = new EdgeLogPublisher(transport.connection, node.engine.store, {
      edge: edge.name,
      types,
      tickMs: edge.tick,
      maxAgeMs: edge.log.maxAge,
      maxBytes: edge.log.maxBytes,
      logger,
    });
    await log.start((listener) => node.engine.feed.subscribe("*", listener));
    node.reportReplication({ edgeLog: log });
    const rpc = serveEdgeRpc({ transport, edge: edge.name, twins: node.twins, types, clock, logger });
    return { node, log, rpc };
  } catch (error) {
    await log?.stop().catch(() => undefined);
    await node.stop().catch(() => undefined);
    throw error;
  }
}

/** Stops what {@link startThickEdge} started: routed commands first, the node last. */
async function stopThickEdge(thick: ThickEdge | undefined): Promise<void> {
  if (!thick) return;
  await thick.rpc.stop();
  await thick.log.stop();
  await thick.node.stop();
}
