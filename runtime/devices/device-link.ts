import { randomUUID } from "node:crypto";
/**
 * How a node reaches its devices, chosen once at start-up from the configuration:
 *
 * - **embedded** (no `nats` section): the in-process bus. Device ingress subscribes to every
 *   device subject and replies to each report once it is persisted (that reply is the device's ack).
 * - **NATS** (`nats.servers`): a NATS connection. Reported state and telemetry arrive durably
 *   through the JetStream stream (`JetStreamIngress`, consuming the shards this node owns; the
 *   device's ack is the stream's PubAck); sync requests and malformed subjects come over core NATS;
 *   desired-state pushes and device commands go out over core NATS.
 *
 * Either way the same `DeviceIngress.process` applies each message, desired state is pushed after
 * each persisted change, and `Twin.sendToDevice` is a request on the device's `cmd` subject.
 */

import type { InProcessBus } from "../../cluster/transport/in-process.ts";
import type { NatsTransport, NatsTransportOptions } from "../../cluster/transport/nats.ts";
import type { Transport } from "../../cluster/transport/transport.ts";
import type { Admission } from "../core/admission.ts";
import type { JsonLimits } from "../core/json.ts";
import { present } from "../core/present.ts";
import type { TwinApi } from "../core/twin-api.ts";
import type { Engine } from "../engine/engine.ts";
import type { Logger } from "../observability/logger.ts";
import type { RateLimit } from "../security/rate-limiter.ts";
import type { DeviceAuthService } from "./auth/auth-callout.ts";
import type { RevocationList } from "./auth/cloud-revocation.ts";
import type { DeviceAuthRunSettings, RunningDeviceAuth } from "./auth/device-auth.ts";
import type { DeviceCredentials } from "./auth/device-credentials.ts";
import { pushDesiredToDevices } from "./egress/desired-push.ts";
import { type DeviceCommandStats, DeviceCommands, deviceCommandStats } from "./egress/device-commands.ts";
import { DeviceIngress } from "./ingress/device-ingress.ts";
import { DeviceRate } from "./ingress/device-rate.ts";
import type { JetStreamIngress } from "./ingress/jetstream-ingress.ts";
import type { IngressConsumerSettings, IngressStreamSettings } from "./ingress/stream-config.ts";

/** The node's device side (see the module comment). */
export interface DeviceLink {
  /** `nats` or `in-process`. */
  readonly kind: "nats" | "in-process";
  /** The node's own connection devices are reached on. */
  readonly transport: Transport;
  /** Counters of device input (accepted, duplicates, refused, failed). */
  readonly ingress: DeviceIngress;
  /** The durable JetStream consumer (NATS only): `ownShards` / `releaseShards` move shards. */
  readonly durable: JetStreamIngress | undefined;
  /** Counters of commands sent to devices. */
  readonly commands: DeviceCommandStats;
  /** The auth callout service, when this node checks device credentials. */
  readonly auth: DeviceAuthService | undefined;
  /** The auth callout's reader of the device credentials file, when this node runs the callout. */
  readonly credentials: DeviceCredentials | undefined;
  /** Each device's token bucket (`limits.deviceRate`), shared with the CoAP and HTTP listeners; absent: none. */
  readonly deviceRate: DeviceRate | undefined;
  /** A new device-side connection to the same bus or server (demo fleet, tests). */
  connectDevice(name?: string): Promise<Transport>;
  stop(): Promise<void>;
}

/** How the device side reaches devices over NATS (absent: the in-process bus). */
export interface NatsDeviceSettings {
  /** Servers and credentials; each connection adds its own name. */
  readonly connection: Omit<NatsTransportOptions, "name">;
  readonly stream: IngressStreamSettings;
  readonly consumer: IngressConsumerSettings;
  /** Most messages of one twin in flight at once. */
  readonly maxInFlightPerTwin: number;
  /** Run the auth callout service for device credentials (absent: the server authenticates devices). */
  readonly auth?: DeviceAuthRunSettings;
  /**
   * A cloud node with `auth`: publish its credentials file's revocations into the hub's stream for
   * the edges (cloud-revocation.ts). Not at an edge (its file is its own).
   */
  readonly publishRevocations?: boolean;
}

/** Starts the device side of a node; `shards` are the shards it consumes (all, on a single node). */
export async function startDeviceLink(options: {
  /** Limits of device payloads. */
  readonly json: JsonLimits;
  /** The cluster's shard count (device subjects map to shards). */
  readonly shardCount: number;
  /** Devices over NATS; absent: the in-process bus. */
  readonly nats: NatsDeviceSettings | undefined;
  readonly nodeId: string;
  readonly bus: InProcessBus;
  readonly twins: TwinApi;
  readonly engine: Engine;
  readonly logger: Logger;
  readonly shards: readonly number[];
  /** A connection the node already opened (kept open on stop); default: one of the link's own. */
  readonly transport?: Transport;
  /** The node's admission control (class `device`, per twin); absent: no bound. */
  readonly admission?: Admission;
  /** Each device's token bucket of reports and telemetry (`limits.deviceRate`); absent: none. */
  readonly deviceRate?: RateLimit;
  /** A thick edge's node: the cloud's revocations the edge learnt, refused by its callout too. */
  readonly cloudRevocations?: RevocationList;
}): Promise<DeviceLink> {
  const { engine, logger, json, nats } = options;
  const commands: DeviceCommandStats = deviceCommandStats();
  let transport: Transport;
  let natsTransport: NatsTransport | undefined;
  const ownsTransport = options.transport === undefined;
  // The NATS client and the JetStream consumers load only when devices come over NATS.
  const { NatsTransport } = nats
    ? await import("../../cluster/transport/nats.ts")
    : { NatsTransport: undefined };
  if (options.transport) {
    transport = options.transport;
    natsTransport =
      NatsTransport && options.transport instanceof NatsTransport ? options.transport : undefined;
  } else if (nats && NatsTransport) {
    natsTransport = await NatsTransport.connect({
      ...nats.connection,
      name: `doppel-node-${options.nodeId}`,
    });
    transport = natsTransport;
  } else {
    transport = options.bus.connect();
  }
  const deviceRate = options.deviceRate ? new DeviceRate(engine.clock, options.deviceRate) : undefined;
  const ingress = new DeviceIngress(
    transport,
    options.twins,
    json,
    logger,
    () => engine.clock.now(),
    options.admission,
    deviceRate,
  );
  let durable: JetStreamIngress | undefined;
  let auth: RunningDeviceAuth | undefined;
  try {
    if (nats?.auth) {
      const { startDeviceAuth } = await import("./auth/device-auth.ts");
      auth = await startDeviceAuth(nats.auth, options.nodeId, logger, {
        ...present({ cloudRevocations: options.cloudRevocations }),
        ...(nats.publishRevocations && natsTransport
          ? { publishRevocations: { connection: natsTransport.connection, replicas: nats.stream.replicas } }
          : {}),
      });
      ingress.devicesAuthenticated = true;
    }
    if (natsTransport && nats) {
      const { JetStreamIngress } = await import("./ingress/jetstream-ingress.ts");
      durable = new JetStreamIngress(natsTransport, ingress, options.shardCount, logger, {
        stream: nats.stream,
        consumer: nats.consumer,
        consumerName: `ingress-${options.nodeId.replace(/[^A-Za-z0-9_-]/g, "_")}-${randomUUID().slice(0, 8)}`,
        maxInFlightPerTwin: nats.maxInFlightPerTwin,
        twins: options.twins,
        owns: (shard) => {
          try {
            engine.ownership.writerFor(shard);
            return true;
          } catch {
            return false;
          }
        },
      });
      await durable.start();
      ingress.start({ durable: true, ...present({ types: nats.stream.types }) });
      await durable.ownShards(options.shards);
    } else {
      ingress.start();
    }
  } catch (error) {
    await durable?.stop().catch(() => undefined);
    await auth?.stop().catch(() => undefined);
    await ingress.stop();
    if (ownsTransport) await transport.close();
    throw error;
  }
  const deviceCommands = new DeviceCommands(transport, json, commands);
  engine.setDeviceSender(deviceCommands.send);
  const stopPush = pushDesiredToDevices(engine.feed, transport);
  return {
    kind: nats ? "nats" : "in-process",
    transport,
    ingress,
    durable,
    commands,
    auth: auth?.service,
    credentials: auth?.credentials,
    deviceRate,
    async connectDevice(name?: string): Promise<Transport> {
      if (!nats || !NatsTransport) return options.bus.connect();
      return NatsTransport.connect({ ...nats.connection, name: name ?? `doppel-device-${options.nodeId}` });
    },
    async stop(): Promise<void> {
      stopPush();
      // Finish (persist and ack) what was delivered before the connection goes.
      await durable?.stop();
      await ingress.stop();
      deviceCommands.stop();
      await auth?.stop();
      if (ownsTransport) await transport.close();
    },
  };
}
