/**
 * Device authentication as one running part: the auth callout service over the device
 * credentials file, and the watch that disconnects a device as soon as its credential is revoked
 * in that file. A cloud node's device link and an edge node (beside its leaf server) start it the
 * same way, from the same `nats.deviceAuth` settings.
 */
import type { Logger } from "../../observability/logger.ts";
import { DeviceAuthService, type DeviceAuthSettings } from "./auth-callout.ts";
import { DeviceCredentials } from "./device-credentials.ts";
import { watchRevocations } from "./revocation-watch.ts";

/** The callout's settings plus where the credentials are and how often revocations are looked for. */
export interface DeviceAuthRunSettings extends DeviceAuthSettings {
  /** The device credentials file (`doppel devices provision` writes it). */
  readonly credentialsFile: string;
  /** How often the file is re-read for revocations (ms). */
  readonly revocationPollMs: number;
}

/** The running service and how to stop it (the watch first, then the service). */
export interface RunningDeviceAuth {
  readonly service: DeviceAuthService;
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
): Promise<RunningDeviceAuth> {
  const credentials = new DeviceCredentials(settings.credentialsFile);
  const service = await DeviceAuthService.start({ settings, credentials, logger, nodeId });
  const stopWatch = watchRevocations(credentials, settings.revocationPollMs, logger, (device) =>
    service.disconnect(device),
  );
  return {
    service,
    stop: async () => {
      stopWatch();
      await service.stop();
    },
  };
}
