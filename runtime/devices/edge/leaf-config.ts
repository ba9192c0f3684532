/**
 * The nats-server configuration of an edge: a server of its own (devices connect to it as to the
 * cloud's), JetStream in the edge's own domain (so its streams are independent of the cloud's and
 * stay writable during an outage), and one leaf remote to the cloud's leaf node port, authenticated
 * with the edge's leaf credentials (user and password, or a `.creds` file; TLS when the URL is
 * `tls://` or a CA is given).
 *
 * The remote does not export device reports and telemetry: those are stored at the edge and
 * reach the cloud only through the edge stream's source (otherwise the cloud's ingress stream
 * would also take them directly, and a device's ack could come from the cloud instead of the
 * edge). Everything else crosses: `sync`, `desired`, `cmd`, `cmd-result`, `errors`, the status
 * subject and the JetStream APIs of both domains.
 */
import { FORWARDED_SUBJECTS } from "./edge-stream.ts";

export interface LeafServerOptions {
  /** The edge's name: the server name and its JetStream domain. */
  readonly edge: string;
  /** Where devices and the edge node connect (`host`, `port`). */
  readonly host: string;
  readonly port: number;
  /** Monitoring port (`/healthz`, `/leafz`), if any. */
  readonly httpPort?: number;
  /** An MQTT listener port for MQTT devices, if any. */
  readonly mqttPort?: number;
  /** JetStream's storage directory. */
  readonly storeDir: string;
  /** The cloud's leaf node URL, e.g. `nats://cloud:7422` or `tls://cloud:7422`. */
  readonly upstream: string;
  /** The edge's leaf credentials at the cloud: user and password, or a `.creds` file. */
  readonly credentials?: { readonly user: string; readonly pass: string } | { readonly credsFile: string };
  /** CA file to verify the cloud's leaf node certificate (TLS). */
  readonly tlsCa?: string;
  /** Extra configuration appended verbatim (e.g. an `authorization` block for devices). */
  readonly extra?: string;
}

/** A quoted string of nats-server's configuration syntax. */
function quote(text: string): string {
  return JSON.stringify(text);
}

/** The URL with the user and password in it (how a leaf remote carries plain credentials). */
function remoteUrl(upstream: string, credentials: LeafServerOptions["credentials"]): string {
  if (!credentials || !("user" in credentials)) return upstream;
  const url = new URL(upstream);
  url.username = credentials.user;
  url.password = credentials.pass;
  return url.toString().replace(/\/$/, "");
}

/** The edge's nats-server configuration (see the module comment). */
export function leafServerConfig(options: LeafServerOptions): string {
  const { credentials } = options;
  const remote = [
    `url: ${quote(remoteUrl(options.upstream, credentials))}`,
    ...(credentials && "credsFile" in credentials ? [`credentials: ${quote(credentials.credsFile)}`] : []),
    ...(options.tlsCa ? [`tls { ca_file: ${quote(options.tlsCa)} }`] : []),
    `deny_exports: [${FORWARDED_SUBJECTS.map(quote).join(", ")}]`,
  ];
  return [
    `# nats-server configuration of the Doppel edge ${quote(options.edge)} (written by Doppel).`,
    `server_name: ${quote(options.edge)}`,
    `listen: ${quote(`${options.host}:${options.port}`)}`,
    ...(options.httpPort === undefined ? [] : [`http: ${quote(`${options.host}:${options.httpPort}`)}`]),
    "max_payload: 1MB",
    "jetstream {",
    `  store_dir: ${quote(options.storeDir)}`,
    `  domain: ${quote(options.edge)}`,
    "  # fsync every write: a device's ack means the report survives a power cut at the edge.",
    "  sync_interval: always",
    "}",
    ...(options.mqttPort === undefined
      ? []
      : [`mqtt { listen: ${quote(`${options.host}:${options.mqttPort}`)} }`]),
    "leafnodes {",
    "  remotes: [",
    "    {",
    ...remote.map((line) => `      ${line}`),
    "    }",
    "  ]",
    "}",
    ...(options.extra ? [options.extra] : []),
    "",
  ].join("\n");
}
