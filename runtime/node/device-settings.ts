/**
 * The device side's settings from the node configuration: payload limits, and how to reach
 * devices over NATS (servers, credentials, the ingress stream and its consumers).
 */
import type { NatsTransportOptions } from "../../cluster/transport/nats.ts";
import type { JsonLimits } from "../core/json.ts";
import { present } from "../core/present.ts";
import type { NatsDeviceSettings } from "../devices/device-link.ts";
import type { NodeConfig } from "./options.ts";

/** Limits of every JSON payload the node accepts. */
export function jsonLimits(config: NodeConfig): JsonLimits {
  return { maxBytes: config.limits.maxPayloadBytes, maxDepth: config.limits.maxJsonDepth };
}

/** The NATS connection options of the configuration (without a connection name). */
export function natsConnection(nats: NonNullable<NodeConfig["nats"]>): Omit<NatsTransportOptions, "name"> {
  return { servers: nats.servers, ...present({ credentials: nats.credentials }) };
}

/** Devices over NATS, or `undefined` for the in-process bus. */
export function natsDeviceSettings(config: NodeConfig): NatsDeviceSettings | undefined {
  const nats = config.nats;
  if (!nats) return undefined;
  return {
    connection: natsConnection(nats),
    stream: {
      name: nats.stream.name,
      replicas: nats.stream.replicas,
      storage: nats.stream.storage,
      maxAgeMs: nats.stream.maxAge,
      maxBytes: nats.stream.maxBytes,
      maxMsgSize: nats.stream.maxMsgSize,
      duplicateWindowMs: nats.stream.duplicateWindow,
    },
    consumer: { maxAckPending: nats.consumer.maxAckPending, ackWaitMs: nats.consumer.ackWait },
    maxInFlightPerTwin: nats.consumer.maxInFlightPerTwin,
  };
}
