/**
 * The HTTP device routes of the node's HTTP listener (`runtime/web/device-routes.ts`) on the
 * shared durable report path. Secure by default, like the listener itself: a device must present
 * its credential (HTTP Basic) unless the node is open — loopback, no API keys or client
 * certificates, no device credentials checked for NATS (`nats.deviceAuth`) — and then a credential
 * that is given is still checked. TLS is the listener's (the gRPC gateway's certificate).
 */
import { parseHostPort } from "../core/host-port.ts";
import type { HttpDeviceStats } from "../web/device-routes.ts";
import type { WebModule } from "../web/server.ts";
import { type DeviceListenerParts, durableReportOptions } from "./durable-report-options.ts";
import { isLoopbackHost } from "./grpc-security.ts";

/** The device routes' module and their counters. */
export async function httpDevices(
  parts: DeviceListenerParts & { readonly listen: string; readonly servicesAuthenticated: boolean },
): Promise<{ module: WebModule; stats: HttpDeviceStats }> {
  const { config } = parts;
  const loopback = isLoopbackHost(parseHostPort(parts.listen, "http.listen").host);
  const requireCredentials =
    !loopback || parts.servicesAuthenticated || config.nats?.deviceAuth !== undefined;
  const [{ DurableReports }, { deviceRoutesModule }] = await Promise.all([
    import("../devices/ingress/durable-reports.ts"),
    import("../web/device-routes.ts"),
  ]);
  const reports = new DurableReports({
    ...durableReportOptions(parts, {
      requireCredentials,
      ackTimeoutMs: config.http.deviceAckTimeout,
    }),
    source: "http",
    credentialHint:
      "send 'Authorization: Basic' with user <type>/<id> and the device's password (doppel devices provision)",
  });
  const stats: HttpDeviceStats = {
    requests: 0,
    stored: 0,
    reads: 0,
    refused: 0,
    unauthorized: 0,
    unavailable: 0,
  };
  return { module: deviceRoutesModule(reports, (type) => parts.registry.has(type), stats), stats };
}
