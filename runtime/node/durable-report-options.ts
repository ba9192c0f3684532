/**
 * The settings of the shared durable report path (`DurableReports`) of the node's request/response
 * device listeners (CoAP, the HTTP device routes), built once from the configuration: payload
 * limits, the node's device credentials, its admission control and its device rate.
 */
import type { Transport } from "../../cluster/transport/transport.ts";
import type { Admission } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import { present } from "../core/present.ts";
import type { DeviceCredentials } from "../devices/auth/device-credentials.ts";
import type { DeviceRate } from "../devices/ingress/device-rate.ts";
import type { DurableReportsOptions } from "../devices/ingress/durable-reports.ts";
import type { TwinRegistry } from "../engine/twin-type.ts";
import { jsonLimits } from "./device-settings.ts";
import type { NodeConfig } from "./options.ts";

/** What the node gives its device listeners (one set, shared by all). */
export interface DeviceListenerParts {
  readonly config: NodeConfig;
  readonly transport: Transport;
  readonly registry: TwinRegistry;
  readonly admission: Admission;
  readonly clock: Clock;
  /** The node's device rate (the device link's), so every protocol charges one bucket per device. */
  readonly deviceRate: DeviceRate | undefined;
  /** The node's one reader of the device credentials file. */
  readonly credentials: DeviceCredentials;
  /** Which messages the node's own ingress consumes (default: all; see `DurableReportsOptions`). */
  readonly ingestedHere?: DurableReportsOptions["ingestedHere"];
}

/** The durable report path's options, without what each protocol fixes (its name, its credential hint). */
export function durableReportOptions(
  parts: DeviceListenerParts,
  listener: { readonly requireCredentials: boolean; readonly ackTimeoutMs: number },
): Omit<DurableReportsOptions, "source" | "credentialHint"> {
  return {
    transport: parts.transport,
    registry: parts.registry,
    limits: jsonLimits(parts.config),
    credentials: parts.credentials,
    requireCredentials: listener.requireCredentials,
    admission: parts.admission,
    ...present({ deviceRate: parts.deviceRate, ingestedHere: parts.ingestedHere }),
    now: () => parts.clock.now(),
    ackTimeoutMs: listener.ackTimeoutMs,
  };
}
