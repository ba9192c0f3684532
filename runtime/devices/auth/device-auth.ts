/**
 * Device authentication as one running part: the auth callout service over the device
 * credentials file, and the watch that disconnects a device as soon as its credential is revoked
 * in that file. A cloud node's device link and an edge node (beside its leaf server) start it the
 * same way, from the same `nats.deviceAuth` settings.
 *
 * Revocation at the edges (cloud-revocation.ts): a cloud node also publishes its file's
 * revocations into the hub's stream for the edges (`publishRevocations`); an edge checks its
 * devices against the cloud's revocations it learnt as well (`cloudRevocations`).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../observability/logger.ts";
import { DeviceAuthService, type DeviceAuthSettings } from "./auth-callout.ts";
import type { RevocationList } from "./cloud-revocation.ts";
import { DeviceCredentials } from "./device-credentials.ts";
import type { RevocationPublisher } from "./revocation-publisher.ts";
import { watchRevocations } from "./revocation-watch.ts";

/** The callout's settings plus where the credentials are and how often revocations are looked for. */
export interface DeviceAuthRunSettings extends DeviceAuthSettings {
  /** The device credentials file (`doppel devices provision` writes it). */
  readonly credentialsFile: string;
  /** How often the file is re-read for revocations (ms). */
  readonly revocationPollMs: number;
}

/** What a cloud node or an edge adds to device authentication for revocation at the edges. */
export interface EdgeRevocationParts {
  /** A cloud node: publish the file's revocations into the hub's stream on this connection (the node's). */
  readonly publishRevocations?: { readonly connection: NatsConnection; readonly replicas: number };
  /** An edge: the cloud's revocations it learnt, refused beside its own file's. */
  readonly cloudRevocations?: RevocationList;
}

/** The running service and how to stop it (the watch first, then the service). */
export interface RunningDeviceAuth {
  readonly service: DeviceAuthService;
  /** The cloud node's publisher of revocations for the edges, when it runs one. */
  readonly publisher: RevocationPublisher | undefined;
  /**
   * The reader of the credentials file the callout checks against: the node's device listeners
   * (CoAP, HTTP) check credentials with it too, so the node reads the file through one reader.
   */
  readonly credentials: DeviceCredentials;
  stop(): Promise<void>;
}

/**
 * Starts the auth callout service and the revocation watch. Fails as
 * {@link DeviceAuthService.start} does (a bad issuer seed: `InvalidArgument`; the server not
 * reachable with the callout's or the system user's credentials: the connection's error).
 */
export async function startDeviceAuth(
  settings: DeviceAuthRunSettings,
  nodeId: string,
  logger: Logger,
  parts: EdgeRevocationParts = {},
): Promise<RunningDeviceAuth> {
  const credentials = new DeviceCredentials(settings.credentialsFile, parts.cloudRevocations);
  const service = await DeviceAuthService.start({ settings, credentials, logger, nodeId });
  let publisher: RevocationPublisher | undefined;
  if (parts.publishRevocations) {
    const { RevocationPublisher } = await import("./revocation-publisher.ts");
    publisher = new RevocationPublisher({ ...parts.publishRevocations, credentials, logger });
  }
  const stopWatch = watchRevocations(
    credentials,
    settings.revocationPollMs,
    logger,
    (device) => service.disconnect(device),
    publisher && (() => publisher.reconcile()),
  );
  return {
    service,
    publisher,
    credentials,
    stop: async () => {
      stopWatch();
      await service.stop();
    },
  };
}
