/**
 * A thin edge node (docs/edge.md): beside the edge's leaf nats-server it keeps the store-and-
 * forward running — the edge stream devices' reports are stored in, its registration as a source
 * of the cloud's ingress stream, trimming of what the cloud stored, the outage counters on
 * `/metrics` and status answers for `doppel edge status`. Twins run in the cloud; desired state,
 * `sync` and commands cross the leaf link as core NATS.
 */
import { randomBytes } from "node:crypto";
import type { NatsTransport } from "../../cluster/transport/nats.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import { type CompiledReduction, compileEdgeOptions } from "../core/edge-telemetry.ts";
import type { TwinClass } from "../core/twin.ts";
import { DesiredResync } from "../devices/edge/desired-resync.ts";
import { EdgeForwarder, type EdgeStatus } from "../devices/edge/edge-forwarder.ts";
import { replayWindowMs, TelemetryForwarder } from "../devices/edge/telemetry-forwarder.ts";
import { TelemetryReducer } from "../devices/edge/telemetry-reducer.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import { NodeMetrics } from "../observability/metrics.ts";
import { jsonLimits, natsConnection } from "./device-settings.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";

export class EdgeNode {
  readonly #transport: NatsTransport;
  readonly #metrics: NodeMetrics;
  readonly #windowTimer: NodeJS.Timeout;

  private constructor(
    readonly id: string,
    readonly config: NodeConfig,
    readonly logger: Logger,
    readonly forwarder: EdgeForwarder,
    /** The telemetry path: raw stream, reduction, forwarding into the edge stream. */
    readonly telemetry: TelemetryForwarder,
    /** Pushes desired state changed in the cloud during an outage once the link is back. */
    readonly desired: DesiredResync,
    transport: NatsTransport,
    metrics: NodeMetrics,
  ) {
    this.#transport = transport;
    this.#metrics = metrics;
    this.#windowTimer = setInterval(() => {
      telemetry.closeDue().catch(() => undefined);
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
    const reductions = new Map<string, Map<string, CompiledReduction>>();
    for (const twin of parts.twins ?? []) reductions.set(twin.type, compileEdgeOptions(twin.type, twin.edge));
    const clock = parts.clock ?? SystemClock;
    const { edge, nats } = config;
    if (!edge || !nats) throw new Error("EdgeNode.start needs the edge and nats sections");
    const id = config.nodeId ?? `edge-${edge.name}-${randomBytes(3).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    const { NatsTransport } = await import("../../cluster/transport/nats.ts");
    const transport = await NatsTransport.connect({ ...natsConnection(nats), name: `doppel-edge-${id}` });
    let forwarder: EdgeForwarder | undefined;
    let telemetry: TelemetryForwarder | undefined;
    const desired = new DesiredResync(transport.connection, { logger, timeoutMs: Math.max(2000, edge.tick) });
    desired.start();
    const metrics = new NodeMetrics(id, {
      residentTwins: () => 0,
      mailboxDepth: () => 0,
      shardsOwned: () => 0,
      edge: () => forwarder?.status,
    });
    try {
      forwarder = new EdgeForwarder(transport.connection, {
        edge: edge.name,
        hubDomain: edge.hubDomain,
        ingressStream: edge.ingressStream,
        stream: {
          name: edge.buffer.stream,
          maxBytes: edge.buffer.maxBytes,
          maxAgeMs: edge.buffer.maxAge,
          maxMsgSize: nats.stream.maxMsgSize,
          duplicateWindowMs: nats.stream.duplicateWindow,
          discard: edge.buffer.discard,
        },
        tickMs: edge.tick,
        now: () => SystemClock.now(),
        logger,
        onStatus: (status) => desired.linkIs(status.linkUp),
      });
      // The edge stream first: it gives up device telemetry to the raw stream.
      await forwarder.start();
      telemetry = new TelemetryForwarder(transport.connection, {
        raw: {
          name: edge.raw.stream,
          maxBytes: edge.raw.maxBytes,
          maxAgeMs: edge.raw.maxAge,
          maxMsgSize: nats.stream.maxMsgSize,
          duplicateWindowMs: nats.stream.duplicateWindow,
        },
        reducer: new TelemetryReducer((type) => reductions.get(type), { graceMs: edge.windowGrace }),
        limits: jsonLimits(config),
        now: () => clock.now(),
        logger,
        replayMs: replayWindowMs(reductions, edge.windowGrace),
      });
      await telemetry.start();
      if (config.metrics.listen !== false) await metrics.listen(config.metrics.listen);
    } catch (error) {
      await telemetry?.stop().catch(() => undefined);
      await desired.stop().catch(() => undefined);
      await forwarder?.stop().catch(() => undefined);
      await metrics.stop().catch(() => undefined);
      await transport.close();
      throw error;
    }
    logger.info({ edge: edge.name, hubDomain: edge.hubDomain }, "edge node started");
    return new EdgeNode(id, config, logger, forwarder, telemetry, desired, transport, metrics);
  }

  /** The edge's store-and-forward state (refreshed every `edge.tick`). */
  get status(): EdgeStatus {
    return this.forwarder.status;
  }

  /** The `host:port` of the Prometheus endpoint, when it runs. */
  get metricsAddress(): string | undefined {
    return this.#metrics.address;
  }

  async stop(): Promise<void> {
    clearInterval(this.#windowTimer);
    await this.telemetry.stop();
    await this.desired.stop();
    await this.forwarder.stop();
    await this.#metrics.stop();
    await this.#transport.close();
    this.logger.info("edge node stopped");
  }
}
