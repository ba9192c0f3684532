/**
 * The gRPC gateway: serves `doppel.v1.TwinService` on top of a {@link TwinApi}, plus the standard
 * `grpc.health.v1.Health` and server reflection (both versions), so `grpcurl -plaintext HOST:PORT
 * list` and `describe` work. Stopping it marks health NOT_SERVING, ends open streams with
 * UNAVAILABLE, lets calls in flight finish within a grace period, then cuts what is left.
 */
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Admission } from "../core/admission.ts";
import { type Clock, SystemClock } from "../core/clock.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { InvalidArgument, Unavailable } from "../core/errors.ts";
import { formatHostPort, parseHostPort } from "../core/host-port.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { Logger } from "../observability/logger.ts";
import type { CallSecurity, HandlerContext, TypeInfo } from "./calls.ts";
import { refuseUndecodable, tolerantDecoding } from "./decoding.ts";
import type { TwinServiceHandlers } from "./generated/doppel/v1/TwinService.ts";
import { loadContract, TWIN_SERVICE_NAME } from "./proto.ts";
import { readStreamHandlers } from "./read-streams.ts";
import { addReflection } from "./reflection.ts";
import { StreamRegistry } from "./streams.ts";
import { unaryHandlers } from "./unary-handlers.ts";
import { watchHandler } from "./watch.ts";

/** What {@link startGateway} serves, where, and with which limits. */
export interface GatewayOptions {
  /** The twins to serve. */
  readonly api: TwinApi;
  /** The twin types this node runs (read on every `ListTypes`). */
  readonly types: () => readonly TypeInfo[];
  /** Counts requests refused as invalid input (metrics). */
  readonly rejected?: (code: string) => void;
  /** The cluster as this node sees it (read on every `GetCluster`); default: an empty view. */
  readonly cluster?: (() => Promise<ClusterView>) | undefined;
  /** `host:port` to listen on; port 0 picks a free port (see {@link Gateway.address}). */
  readonly listen: string;
  /** Largest gRPC message received or sent, bytes; larger ones fail with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  readonly logger: Logger;
  /** The node's clock, on which `TwinApi` deadlines are expressed. Default: the system clock. */
  readonly clock?: Clock;
  /** Events per store read while streaming history (default 500). */
  readonly historyPageSize?: number;
  /** Changes a watch may hold for a slow client before it is cut off (default 1000). */
  readonly watchBufferLimit?: number;
  /** How long `stop` lets calls in flight finish before cutting them (default 5000 ms). */
  readonly shutdownGraceMs?: number;
  /**
   * The node's admission control: `TwinService` calls over its `grpc` bound are answered
   * RESOURCE_EXHAUSTED with `retry-after-ms` before any work is queued; open `WatchTwin` streams
   * are bounded by the `watch` class (a slot held until the stream ends). Health checks and
   * reflection are not subject to it. Absent: no bound.
   */
  readonly admission?: Admission;
  /** Authentication, authorization and rate limits of `TwinService` calls; absent: everyone may do everything. */
  readonly security?: CallSecurity;
  /** Serve TLS instead of plaintext; with `clientCa`, require client certificates signed by it (mTLS). */
  readonly tls?: GatewayTls;
}

/** The gateway's TLS material, PEM. */
export interface GatewayTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA(s) that sign client certificates; when given, a client without a valid certificate is refused at the handshake. */
  readonly clientCa?: Buffer;
}

/** A running gateway. */
export interface Gateway {
  /** The address it listens on, `host:port` with the actual port. */
  readonly address: string;
  /** Stops serving (idempotent). Never rejects. */
  stop(): Promise<void>;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgument(`gateway ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function credentials(tls: GatewayTls | undefined): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  try {
    return grpc.ServerCredentials.createSsl(
      tls.clientCa ?? null,
      [{ cert_chain: tls.cert, private_key: tls.key }],
      tls.clientCa !== undefined,
    );
  } catch (error) {
    throw new InvalidArgument(`gateway TLS: ${(error as Error).message}`);
  }
}

function bind(server: grpc.Server, listen: string, tls: GatewayTls | undefined): Promise<number> {
  const serverCredentials = credentials(tls);
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, serverCredentials, (error, port) => {
      if (error) reject(new Unavailable(`gateway cannot listen on ${listen}: ${error.message}`));
      else resolve(port);
    });
  });
}

/**
 * Starts a gateway. Fails with `InvalidArgument` for bad options and `Unavailable` when the
 * address cannot be bound (in use, unknown host).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { host } = parseHostPort(options.listen, "gateway listen address");
  const maxMessageBytes = positiveInteger(options.maxMessageBytes, 0, "maxMessageBytes");
  const graceMs = positiveInteger(options.shutdownGraceMs, 5000, "shutdownGraceMs");
  const streams = new StreamRegistry();
  const ctx: HandlerContext = {
    api: options.api,
    types: options.types,
    cluster: options.cluster ?? (async () => ({ name: "", shardCount: 0, self: "", nodes: [], shards: [] })),
    ...(options.rejected ? { rejected: options.rejected } : {}),
    ...(options.admission ? { admission: options.admission } : {}),
    logger: options.logger,
    clock: options.clock ?? SystemClock,
    historyPageSize: positiveInteger(options.historyPageSize, 500, "historyPageSize"),
    watchBufferLimit: positiveInteger(options.watchBufferLimit, 1000, "watchBufferLimit"),
    streams,
    ...(options.security ? { security: options.security } : {}),
  };

  const contract = loadContract();
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
  });
  const handlers: TwinServiceHandlers = {
    ...unaryHandlers(ctx),
    ...readStreamHandlers(ctx),
    WatchTwin: watchHandler(ctx),
  };
  // Bytes that are not a valid request answer INVALID_ARGUMENT, not grpc-js's INTERNAL.
  server.addService(
    tolerantDecoding(contract.service),
    refuseUndecodable(handlers, contract.service, options.logger, options.rejected),
  );
  const health = new HealthImplementation({ "": "NOT_SERVING", [TWIN_SERVICE_NAME]: "NOT_SERVING" });
  health.addToServer(server);
  addReflection(server, options.logger);

  let port: number;
  try {
    port = await bind(server, options.listen, options.tls);
  } catch (error) {
    server.forceShutdown();
    throw error;
  }
  health.setStatus("", "SERVING");
  health.setStatus(TWIN_SERVICE_NAME, "SERVING");
  const address = formatHostPort(host, port);
  options.logger.info(
    { address, tls: options.tls ? (options.tls.clientCa ? "mtls" : "tls") : "off" },
    "gRPC gateway listening",
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= new Promise<void>((resolve) => {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(TWIN_SERVICE_NAME, "NOT_SERVING");
      streams.closeAll(new Unavailable("the gateway is shutting down; retry on another node"));
      const timer = setTimeout(() => {
        options.logger.warn(
          { address, graceMs },
          "gRPC calls still open after the grace period; cutting them",
        );
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    }).then(() => options.logger.info({ address }, "gRPC gateway stopped"));
    return stopping;
  };
  return { address, stop };
}
