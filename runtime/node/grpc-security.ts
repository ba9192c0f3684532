/**
 * The security of the node's service listeners (the gRPC gateway and the HTTP listener), built
 * from the configuration: API keys (`grpc.apiKeys`), TLS and mTLS (`grpc.tls`), rate limits
 * (`grpc.rateLimit`, per key in the keys file) — one set of keys and one rate bucket per key for
 * both protocols — and the rule that makes a node secure by default: it serves a non-loopback
 * address only with API keys (or mTLS) and TLS, unless `grpc.insecure` says otherwise.
 */

import type { CallSecurity } from "../api/callers.ts";
import type { Clock } from "../core/clock.ts";
import { InvalidArgument } from "../core/errors.ts";
import { parseHostPort } from "../core/host-port.ts";
import type { GatewayTls } from "../grpc/server.ts";
import type { Logger } from "../observability/logger.ts";
import type { NodeMetrics } from "../observability/metrics.ts";
import { ApiKeys } from "../security/api-keys.ts";
import { readPem } from "../security/pem-files.ts";
import { RateLimiter } from "../security/rate-limiter.ts";
import type { NodeConfig } from "./options.ts";

/** True for `localhost`, `127.x.x.x` and `::1`: addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/**
 * Refuses (`InvalidArgument`) to serve `listen` beyond loopback unless `secured` (authentication
 * and TLS) or `insecure`; warns when it serves anyway.
 */
export function refuseExposed(
  what: "gRPC" | "HTTP",
  listen: string,
  field: string,
  parts: readonly string[],
  secured: boolean,
  insecure: boolean,
  logger: Logger,
): void {
  const host = listen === "" ? "" : parseHostPort(listen, field).host;
  if (listen === "" || isLoopbackHost(host) || secured) return;
  if (!insecure) {
    throw new InvalidArgument(
      `refusing to serve ${what} on ${listen} (not loopback) with ${parts.join(", ")}: give --api-keys FILE ` +
        "and --tls-cert/--tls-key (see docs/security.md), listen on localhost, or pass --insecure on a network you trust",
    );
  }
  logger.warn({ listen }, `INSECURE: serving ${what} on ${listen} with ${parts.join(", ")} (--insecure)`);
}

/** What the gateway is told about security, and a sentence saying how it is protected. */
export interface GatewaySecurityParts {
  readonly security?: CallSecurity;
  readonly tls?: GatewayTls;
  /** E.g. "TLS, API keys" or "plaintext, no authentication (loopback only)". */
  readonly summary: string;
  /** The same keys, rate buckets and TLS for the HTTP listener (`http.listen`), counted as `source: "http"`. */
  readonly http: { readonly security?: CallSecurity; readonly summary: string };
}

/**
 * Builds the gateway's security from `config.grpc`, refusing (`InvalidArgument`) a non-loopback
 * listen address without authentication and TLS unless `grpc.insecure`, and warning when it is.
 */
export function gatewaySecurity(
  config: NodeConfig,
  clock: Clock,
  logger: Logger,
  metrics: NodeMetrics | undefined,
): GatewaySecurityParts {
  const grpc = config.grpc;
  const listen = grpc.listen === false ? "" : grpc.listen;
  const tlsConfig = grpc.tls;
  const tls: GatewayTls | undefined = tlsConfig && {
    cert: readPem(tlsConfig.cert, "grpc.tls.cert (--tls-cert)"),
    key: readPem(tlsConfig.key, "grpc.tls.key (--tls-key)"),
    ...(tlsConfig.clientCa
      ? { clientCa: readPem(tlsConfig.clientCa, "grpc.tls.clientCa (--tls-client-ca)") }
      : {}),
  };
  const keys =
    grpc.apiKeys === undefined
      ? undefined
      : new ApiKeys(grpc.apiKeys, clock, {
          onReloadError: (error) =>
            logger.error(
              { err: error, file: grpc.apiKeys },
              "API keys file unreadable; keeping the last good keys",
            ),
        });
  const mtls = tlsConfig?.clientCa !== undefined;
  const authenticated = keys !== undefined || mtls;
  const parts = [
    tls ? (mtls ? "TLS with client certificates" : "TLS") : "plaintext",
    ...(keys ? [`API keys from ${grpc.apiKeys} (${keys.activeCount} active)`] : []),
    ...(authenticated ? [] : ["no authentication"]),
  ];
  const secured = authenticated && tls !== undefined;
  refuseExposed("gRPC", listen, "grpc.listen", parts, secured, grpc.insecure, logger);
  const httpListen = config.http.listen === false ? "" : config.http.listen;
  refuseExposed("HTTP", httpListen, "http.listen", parts, secured, grpc.insecure, logger);
  const summaryFor = (address: string) =>
    `${parts.join(", ")}${!authenticated && isLoopbackHost(address === "" ? "" : parseHostPort(address).host) ? " (loopback only)" : ""}`;
  const summary = summaryFor(listen);
  if (!authenticated) return { ...(tls ? { tls } : {}), summary, http: { summary: summaryFor(httpListen) } };
  const security: CallSecurity = {
    ...(keys ? { keys } : {}),
    ...(mtls ? { certificateRules: tlsConfig?.clientCertificates ?? [] } : {}),
    limiter: new RateLimiter(clock),
    ...(grpc.rateLimit ? { defaultRate: grpc.rateLimit } : {}),
    throttled: (principal) => metrics?.metrics.rateLimited.add(1, { source: "grpc", kind: principal.kind }),
    refused: (code) => metrics?.metrics.authRefused.add(1, { source: "grpc", code }),
  };
  const httpSecurity: CallSecurity = {
    ...security,
    throttled: (principal) => metrics?.metrics.rateLimited.add(1, { source: "http", kind: principal.kind }),
    refused: (code) => metrics?.metrics.authRefused.add(1, { source: "http", code }),
  };
  return {
    security,
    ...(tls ? { tls } : {}),
    summary,
    http: { security: httpSecurity, summary: summaryFor(httpListen) },
  };
}
