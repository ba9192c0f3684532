/**
 * `doppel edge leaf-config`: prints the nats-server configuration of an edge's leaf server
 * (docs/edge.md). With `--config`, the edge node's configuration supplies the edge's name and
 * upstream (flags win) and, when it has `nats.deviceAuth`, the leaf server's auth callout: the
 * accounts, the issuer and the node's, callout's and system users, the same as the edge node
 * connects with, so devices at the edge are checked by the edge node (docs/security.md).
 */
import { InvalidArgument } from "../core/errors.ts";
import { type HostPort, parseHostPort } from "../core/host-port.ts";
import { present } from "../core/present.ts";
import { leafServerConfig } from "../devices/edge/leaf-config.ts";
import { leafDeviceAuth } from "../node/device-settings.ts";
import { compileConfig } from "../node/options.ts";
import { buildConfig } from "./start-config.ts";

export interface LeafConfigFlags {
  readonly edge?: string;
  readonly upstream?: string;
  readonly listen?: string;
  readonly storeDir?: string;
  readonly creds?: string;
  readonly mqtt?: string;
  readonly config?: string;
}

/** `host:port` of a flag (core/host-port.ts), a real port; `InvalidArgument` naming the flag otherwise. */
function address(value: string, flag: string): HostPort {
  const parsed = parseHostPort(value, flag);
  if (parsed.port === 0)
    throw new InvalidArgument(`${flag} ${JSON.stringify(value)}: port 0 is not a port to listen on`);
  return parsed;
}

/**
 * Prints the edge's leaf nats-server configuration (credentials in the URL, or `--creds`); `env`
 * completes `--config` as for `doppel start` (`DOPPEL_NATS`, ...).
 */
export function leafConfigCommand(
  flags: LeafConfigFlags,
  out: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const config = flags.config ? compileConfig(buildConfig({ config: flags.config }, env)) : undefined;
  const edge = flags.edge ?? config?.edge?.name;
  const upstream = flags.upstream ?? config?.edge?.upstream;
  if (!edge) throw new InvalidArgument("--edge is required (or edge.name in --config)", { field: "edge" });
  if (!upstream)
    throw new InvalidArgument("--upstream is required (or edge.upstream in --config)", { field: "upstream" });
  const { host, port } = address(flags.listen ?? "127.0.0.1:4222", "--listen");
  const mqtt = flags.mqtt === undefined ? undefined : address(flags.mqtt, "--mqtt");
  if (mqtt && mqtt.host !== host)
    throw new InvalidArgument("--mqtt must be on the --listen host", { field: "--mqtt" });
  out(
    leafServerConfig({
      edge,
      host,
      port,
      storeDir: flags.storeDir ?? ".doppel/edge-nats",
      upstream,
      ...(flags.creds ? { credentials: { credsFile: flags.creds } } : {}),
      ...present({ mqttPort: mqtt?.port, deviceAuth: config && leafDeviceAuth(config) }),
    }),
  );
}
