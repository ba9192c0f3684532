/**
 * The device side's settings from the node configuration: payload limits, and how to reach
 * devices over NATS (servers, credentials, the ingress stream and its consumers).
 */
import { join } from "node:path";
import type { NatsTransportOptions } from "../../cluster/transport/nats.ts";
import { InvalidArgument } from "../core/errors.ts";
import type { JsonLimits } from "../core/json.ts";
import { present } from "../core/present.ts";
import { issuerPublicKey } from "../devices/auth/auth-callout.ts";
import type { NatsDeviceSettings } from "../devices/device-link.ts";
import type { LeafDeviceAuth, LeafUser } from "../devices/edge/leaf-config.ts";
import type { NodeConfig } from "./options.ts";

/** Limits of every JSON payload the node accepts. */
export function jsonLimits(config: NodeConfig): JsonLimits {
  return { maxBytes: config.limits.maxPayloadBytes, maxDepth: config.limits.maxJsonDepth };
}

/** The NATS connection options of the configuration (without a connection name). */
export function natsConnection(nats: NonNullable<NodeConfig["nats"]>): Omit<NatsTransportOptions, "name"> {
  const tls = nats.tls && {
    ...present({ caFile: nats.tls.ca, certFile: nats.tls.cert, keyFile: nats.tls.key }),
  };
  return { servers: nats.servers, ...present({ credentials: nats.credentials, tls }) };
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
      // A thick edge's node takes its edge twins' reports; the edge's forwarding streams the rest,
      // and the raw telemetry stream every type's telemetry (the edge node records the edge twins').
      ...(config.edge?.twins ? { types: config.edge.twins, reportsOnly: true } : {}),
    },
    consumer: {
      maxAckPending: nats.consumer.maxAckPending,
      ackWaitMs: nats.consumer.ackWait,
      processingDeadlineMs: nats.consumer.processingDeadline,
    },
    maxInFlightPerTwin: nats.consumer.maxInFlightPerTwin,
    ...present({ auth: deviceAuthSettings(config) }),
    // A cloud node tells the edges about its file's revocations; an edge's file is its own.
    ...(nats.deviceAuth && !config.edge ? { publishRevocations: true } : {}),
  };
}

/** The path of the device credentials file of the configuration. */
export function deviceCredentialsPath(config: NodeConfig): string {
  return config.nats?.deviceAuth?.credentialsFile ?? join(config.dataDir, "device-credentials.json");
}

/** The auth callout service's settings, when the configuration has `nats.deviceAuth`. */
export function deviceAuthSettings(config: NodeConfig): NatsDeviceSettings["auth"] {
  const nats = config.nats;
  const auth = nats?.deviceAuth;
  if (!nats || !auth) return undefined;
  return {
    issuerSeed: auth.issuerSeed,
    account: auth.account,
    jwtTtlMs: auth.jwtTtl,
    // The service's and the system user's connections go to the same servers, with the same TLS.
    connection: { ...natsConnection(nats), credentials: auth.credentials },
    ...present({ system: auth.system ? { ...natsConnection(nats), credentials: auth.system } : undefined }),
    credentialsFile: deviceCredentialsPath(config),
    revocationPollMs: auth.revocationPoll,
  };
}

/** A user and password of the configuration, for a server's configuration file. */
function passwordUser(credentials: unknown, field: string): LeafUser {
  if (
    typeof credentials === "object" &&
    credentials !== null &&
    "user" in credentials &&
    "pass" in credentials
  )
    return { user: String(credentials.user), pass: String(credentials.pass) };
  throw new InvalidArgument(`${field} must be a user and password to write the leaf server's users`, {
    field,
  });
}

/**
 * The leaf server's auth callout for an edge node configured with `nats.deviceAuth`: the
 * issuer's public key (from the seed), the devices' account, and the node's (`nats.credentials`),
 * the callout's and the system user (user and password each; anything else: `InvalidArgument`
 * naming the field). Absent without `nats.deviceAuth`.
 */
export function leafDeviceAuth(config: NodeConfig): LeafDeviceAuth | undefined {
  const auth = config.nats?.deviceAuth;
  if (!auth) return undefined;
  return {
    issuer: issuerPublicKey(auth.issuerSeed),
    account: auth.account,
    node: passwordUser(config.nats?.credentials, "nats.credentials"),
    callout: passwordUser(auth.credentials, "nats.deviceAuth.credentials"),
    ...present({ system: auth.system && passwordUser(auth.system, "nats.deviceAuth.system") }),
  };
}
