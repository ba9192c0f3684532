/**
 * A thin edge's CoAP listener (`coap` in the configuration; docs/edge.md): the node's listener
 * (`startCoapListener`, the same checks and the same durable report path) on the edge node's own
 * connection to the leaf server. A report or telemetry message is published into the edge's
 * streams (the edge stream takes reports, the raw stream telemetry), so a confirmable request's
 * 2.04 / 2.01 means "durable at the edge", during an outage too. `GET desired` asks the cloud's
 * twin across the leaf link (`sync`); its Observe notifications are the desired pushes on the
 * device's subject at the edge: those from the cloud and those of the edge node's desired resync
 * after an outage.
 *
 * What a node takes from its device link, a thin edge has of its own: the twin registry of the twin
 * modules the edge node loads (so reports are checked against the types' schemas at the edge), its
 * own admission control and per-device rate (`admission`, `limits.deviceRate`: there is no other
 * ingress at the edge that charges these devices) and the edge's device credentials file (the one
 * the edge's auth callout reads, `nats.deviceAuth.credentialsFile` or `<data>/device-credentials.json`),
 * read through the callout's reader when the edge node runs it, with the cloud's revocations the
 * edge learnt.
 */
import type { Transport } from "../../cluster/transport/transport.ts";
import { Admission } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import type { TwinClass } from "../core/twin.ts";
import type { RevocationList } from "../devices/auth/cloud-revocation.ts";
import type { DeviceCredentials } from "../devices/auth/device-credentials.ts";
import type { CoapIngress } from "../devices/coap/coap-ingress.ts";
import { DeviceRate } from "../devices/ingress/device-rate.ts";
import type { Logger } from "../observability/logger.ts";
import { startCoapListener } from "./coap-listener.ts";
import { deviceCredentialsPath } from "./device-settings.ts";
import { registerTwins } from "./engine-setup.ts";
import type { NodeConfig } from "./options.ts";

/** Starts the thin edge's CoAP listener when the configuration has `coap`. */
export async function startEdgeCoap(
  config: NodeConfig,
  parts: {
    readonly transport: Transport;
    readonly twins: readonly TwinClass[];
    readonly clock: Clock;
    readonly logger: Logger;
    /** The cloud's revocations the edge learnt, refused beside the edge's own file's. */
    readonly cloudRevocations?: RevocationList;
    /**
     * The edge's auth callout's reader of the credentials file (with `cloudRevocations` already),
     * when the edge node runs the callout.
     */
    readonly credentials?: DeviceCredentials;
  },
): Promise<CoapIngress | undefined> {
  if (!config.coap) return undefined;
  const { clock } = parts;
  let credentials = parts.credentials;
  if (!credentials) {
    const { DeviceCredentials } = await import("../devices/auth/device-credentials.ts");
    credentials = new DeviceCredentials(deviceCredentialsPath(config), parts.cloudRevocations);
  }
  const rate = config.limits.deviceRate;
  return startCoapListener({
    config,
    transport: parts.transport,
    registry: registerTwins(parts.twins, config),
    admission: new Admission(clock, config.admission),
    clock,
    deviceRate: rate ? new DeviceRate(clock, rate) : undefined,
    credentials,
    // Nothing at a thin edge consumes what it stores: the edge streams forward it.
    ingestedHere: () => false,
    logger: parts.logger,
  });
}
