/**
 * The node's CoAP listener (`coap` in the configuration), secure by default like the gRPC
 * gateway: CoAP here is plaintext UDP (no DTLS), so a non-loopback address is served only with
 * `coap.insecure` (the operator accepts that credentials and payloads travel in the clear), and
 * then every request must carry a valid device credential. On loopback credentials are checked
 * when given, and required when `coap.requireCredentials` or the node checks device credentials
 * for NATS (`nats.deviceAuth`).
 */
import { InvalidArgument } from "../core/errors.ts";
import { parseHostPort } from "../core/host-port.ts";
import type { CoapIngress } from "../devices/coap/coap-ingress.ts";
import type { Logger } from "../observability/logger.ts";
import { type DeviceListenerParts, durableReportOptions } from "./durable-report-options.ts";
import { isLoopbackHost } from "./grpc-security.ts";

/** Starts the CoAP listener when the configuration has `coap`; refuses an insecure setup. */
export async function startCoapListener(
  parts: DeviceListenerParts & { readonly logger: Logger },
): Promise<CoapIngress | undefined> {
  const { config, logger } = parts;
  const coap = config.coap;
  if (!coap) return undefined;
  const { host, port } = parseHostPort(coap.listen, "coap.listen");
  const loopback = isLoopbackHost(host);
  if (!loopback && !coap.insecure) {
    throw new InvalidArgument(
      `refusing to serve CoAP on ${coap.listen} (not loopback): CoAP here is plaintext UDP (no DTLS), so device ` +
        "credentials would travel in the clear; listen on localhost, or pass --insecure (coap.insecure) on a network you trust",
    );
  }
  if (!loopback && coap.requireCredentials === false) {
    throw new InvalidArgument(`coap.requireCredentials cannot be false on ${coap.listen} (not loopback)`);
  }
  const requireCredentials = !loopback || (coap.requireCredentials ?? config.nats?.deviceAuth !== undefined);
  const { CoapIngress } = await import("../devices/coap/coap-ingress.ts");
  const ingress = await CoapIngress.start({
    ...durableReportOptions(parts, { requireCredentials, ackTimeoutMs: coap.ackTimeout }),
    host,
    port,
    logger,
    maxObservers: coap.maxObservers,
    maxObserversPerDevice: coap.maxObserversPerDevice,
  });
  if (!loopback) {
    logger.warn(
      { listen: ingress.address },
      `INSECURE: serving plaintext CoAP on ${ingress.address} (--insecure); device credentials are required`,
    );
  }
  logger.info({ listen: ingress.address, requireCredentials }, "CoAP ingress listening");
  return ingress;
}
