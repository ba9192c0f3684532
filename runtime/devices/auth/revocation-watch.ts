/**
 * Disconnects devices as soon as their credential is revoked. `doppel devices revoke` rewrites the
 * credentials file; every `pollMs` the node re-reads it (only when it changed) and calls
 * `disconnect` for each device that was active and no longer is. A device whose kick fails is
 * still refused at its next connect and loses its connection when its JWT expires. `afterPoll`
 * (a cloud node's revocation publisher) runs after every poll, once at start too.
 */
import type { Logger } from "../../observability/logger.ts";
import type { DeviceCredentials } from "./device-credentials.ts";

function activeDevices(credentials: DeviceCredentials): Set<string> {
  return new Set(
    credentials
      .list()
      .filter((record) => record.revokedAt === undefined)
      .map((record) => record.device),
  );
}

/** Starts the watch; returns its stop function. */
export function watchRevocations(
  credentials: DeviceCredentials,
  pollMs: number,
  logger: Logger,
  disconnect: (device: string) => Promise<unknown>,
  afterPoll?: () => Promise<void>,
): () => void {
  let active = new Set<string>();
  try {
    active = activeDevices(credentials);
  } catch (error) {
    logger.error({ err: error }, "device credentials: cannot read the file");
  }
  let running = afterPoll !== undefined;
  if (afterPoll) void afterPoll().finally(() => (running = false));
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void (async () => {
      try {
        const now = activeDevices(credentials);
        const revoked = [...active].filter((device) => !now.has(device));
        active = now;
        for (const device of revoked) {
          await disconnect(device).catch((error: unknown) =>
            logger.warn({ err: error, device }, "device credentials: could not disconnect a revoked device"),
          );
        }
        await afterPoll?.();
      } catch (error) {
        logger.error({ err: error }, "device credentials: cannot read the file");
      } finally {
        running = false;
      }
    })();
  }, pollMs);
  timer.unref();
  return () => clearInterval(timer);
}
