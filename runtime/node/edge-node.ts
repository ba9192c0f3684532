/**
 * A thin edge node (docs/edge.md): beside the edge's leaf nats-server it keeps the store-and-
 * forward running — the edge stream devices' reports are stored in, its registration as a source
 * of the cloud's ingress stream, trimming of what the cloud stored, the outage counters on
 * `/metrics` and status answers for `doppel edge status`. Twins run in the cloud; desired state,
 * `sync` and commands cross the leaf link as core NATS.
 */
import { randomBytes } from "node:crypto";
import type { NatsTransport } from "../../cluster/transport/nats.ts";
import { SystemClock } from "../core/clock.ts";
import { EdgeForwarder, type EdgeStatus } from "../devices/edge/edge-forwarder.ts";
import { createLogger, type Logger } from "../observability/logger.ts";
import { NodeMetrics } from "../observability/metrics.ts";
import { natsConnection } from "./device-settings.ts";
import { compileConfig, type NodeConfig, type NodeConfigInput } from "./options.ts";

export class EdgeNode {
  readonly #transport: NatsTransport;
  readonly #metrics: NodeMetrics;

  private constructor(
    readonly id: string,
    readonly config: NodeConfig,
    readonly logger: Logger,
    readonly forwarder: EdgeForwarder,
    transport: NatsTransport,
    metrics: NodeMetrics,
  ) {
    this.#transport = transport;
    this.#metrics = metrics;
  }

  /**
   * Starts an edge node. Fails with `InvalidArgument` for configuration without `edge` and `nats`,
   * and when the edge's own NATS or JetStream cannot be reached (the cloud may be down: the edge
   * buffers and registers once the link is up).
   */
  static async start(
    input: NodeConfigInput | NodeConfig,
    parts: { logger?: Logger } = {},
  ): Promise<EdgeNode> {
    const config = compileConfig(input);
    const { edge, nats } = config;
    if (!edge || !nats) throw new Error("EdgeNode.start needs the edge and nats sections");
    const id = config.nodeId ?? `edge-${edge.name}-${randomBytes(3).toString("hex")}`;
    const logger = parts.logger ?? createLogger({ level: config.log.level, nodeId: id });
    const { NatsTransport } = await import("../../cluster/transport/nats.ts");
    const transport = await NatsTransport.connect({ ...natsConnection(nats), name: `doppel-edge-${id}` });
    let forwarder: EdgeForwarder | undefined;
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
      });
      await forwarder.start();
      if (config.metrics.listen !== false) await metrics.listen(config.metrics.listen);
    } catch (error) {
      await forwarder?.stop().catch(() => undefined);
      await metrics.stop().catch(() => undefined);
      await transport.close();
      throw error;
    }
    logger.info({ edge: edge.name, hubDomain: edge.hubDomain }, "edge node started");
    return new EdgeNode(id, config, logger, forwarder, transport, metrics);
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
    await this.forwarder.stop();
    await this.#metrics.stop();
    await this.#transport.close();
    this.logger.info("edge node stopped");
  }
}
