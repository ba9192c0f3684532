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
 * edge), nor the cloud's device revocation records (`doppel.revocations.>`: an edge must not
 * publish a record every edge would read). Nor does it import what the edge's streams take
 * (`EDGE_LOCAL_SUBJECTS`: reports, telemetry, forwarded telemetry, the thick edge's log; and the
 * revocation records, which the edge node copies into its own stream from the cloud's feed): a publish on those subjects in the cloud
 * or at another edge must not land in this edge's streams (another edge could otherwise write into
 * this edge's log, which the cloud trusts as this edge's). Everything else crosses: `sync`,
 * `desired`, `cmd`, `cmd-result`, `errors`, the status subject and the JetStream APIs of both domains.
 *
 * With `deviceAuth` the leaf server sends devices to the edge node's auth callout, as the cloud's
 * server does (docs/security.md): accounts `AUTH` (the callout service's user), the devices'
 * account (`DOPPEL` by default: the edge node's user, its JetStream and every device the callout
 * lets in) and `SYS` (the system user that kicks revoked devices). The leaf remote binds the
 * devices' account, so exactly its subjects cross the link (minus the reports above); the callout
 * and system accounts stay local (the callout works during an outage, a kick reaches only this
 * server).
 */
import { InvalidArgument } from "../../core/errors.ts";
import { formatHostPort } from "../../core/host-port.ts";
import { REVOCATIONS_PREFIX } from "../auth/cloud-revocation.ts";
import { EDGE_LOCAL_SUBJECTS, FORWARDED_SUBJECTS } from "./edge-stream.ts";

/**
 * The cloud's revocation records: an edge must not publish into the hub's stream, and the edge's
 * copy of it is filled by the edge node only (from the cloud's revocation feed).
 */
const REVOCATION_SUBJECTS = `${REVOCATIONS_PREFIX}.>`;

/** A user and password of the leaf server's configuration. */
export interface LeafUser {
  readonly user: string;
  readonly pass: string;
}

/** The leaf server's auth callout: who skips it and whose key signs the device JWTs. */
export interface LeafDeviceAuth {
  /** Public key (`A...`) of the account key the edge node signs device JWTs with (`nats.deviceAuth.issuerSeed`). */
  readonly issuer: string;
  /** The account devices are placed in, with the edge node's user and JetStream; bound to the leaf remote. */
  readonly account: string;
  /** The edge node's user (`nats.credentials`). */
  readonly node: LeafUser;
  /** The callout service's user (`nats.deviceAuth.credentials`). */
  readonly callout: LeafUser;
  /** The system user (`nats.deviceAuth.system`), to disconnect revoked devices at once. */
  readonly system?: LeafUser;
}

/** The callout's and the system user's accounts at the edge (local: never bound to the remote). */
export const LEAF_CALLOUT_ACCOUNT = "AUTH";
export const LEAF_SYSTEM_ACCOUNT = "SYS";

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
  /** Run Doppel's auth callout for devices at this server (see the module comment). */
  readonly deviceAuth?: LeafDeviceAuth;
  /** Extra configuration appended verbatim. */
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

function userEntry(user: LeafUser): string {
  return `{ user: ${quote(user.user)}, password: ${quote(user.pass)} }`;
}

/** The accounts and `auth_callout` of a leaf server that runs Doppel's device auth. */
function deviceAuthLines(auth: LeafDeviceAuth): string[] {
  if (auth.account === LEAF_CALLOUT_ACCOUNT || auth.account === LEAF_SYSTEM_ACCOUNT)
    throw new InvalidArgument(
      `the devices' account cannot be named ${auth.account} (the leaf server's callout and system accounts are AUTH and SYS)`,
      { field: "nats.deviceAuth.account" },
    );
  const users = [auth.node, auth.callout, ...(auth.system ? [auth.system] : [])].map((u) => u.user);
  if (new Set(users).size !== users.length)
    throw new InvalidArgument("the edge node's, the callout's and the system user's names must differ", {
      field: "nats.deviceAuth",
    });
  return [
    "accounts {",
    `  ${LEAF_CALLOUT_ACCOUNT} { users: [ ${userEntry(auth.callout)} ] }`,
    `  ${auth.account} { jetstream: enabled, users: [ ${userEntry(auth.node)} ] }`,
    ...(auth.system ? [`  ${LEAF_SYSTEM_ACCOUNT} { users: [ ${userEntry(auth.system)} ] }`] : []),
    "}",
    ...(auth.system ? [`system_account: ${LEAF_SYSTEM_ACCOUNT}`] : []),
    "authorization {",
    "  auth_callout {",
    `    issuer: ${quote(auth.issuer)}`,
    `    account: ${LEAF_CALLOUT_ACCOUNT}`,
    `    auth_users: [ ${users.map(quote).join(", ")} ]`,
    "  }",
    "}",
  ];
}

/** The edge's nats-server configuration (see the module comment). */
export function leafServerConfig(options: LeafServerOptions): string {
  const { credentials, deviceAuth } = options;
  const remote = [
    `url: ${quote(remoteUrl(options.upstream, credentials))}`,
    ...(deviceAuth ? [`account: ${quote(deviceAuth.account)}`] : []),
    ...(credentials && "credsFile" in credentials ? [`credentials: ${quote(credentials.credsFile)}`] : []),
    ...(options.tlsCa ? [`tls { ca_file: ${quote(options.tlsCa)} }`] : []),
    `deny_exports: [${[...FORWARDED_SUBJECTS, REVOCATION_SUBJECTS].map(quote).join(", ")}]`,
    `deny_imports: [${[...EDGE_LOCAL_SUBJECTS, REVOCATION_SUBJECTS].map(quote).join(", ")}]`,
  ];
  return [
    `# nats-server configuration of the Doppel edge ${quote(options.edge)} (written by Doppel).`,
    `server_name: ${quote(options.edge)}`,
    `listen: ${quote(formatHostPort(options.host, options.port))}`,
    ...(options.httpPort === undefined
      ? []
      : [`http: ${quote(formatHostPort(options.host, options.httpPort))}`]),
    "max_payload: 1MB",
    "jetstream {",
    `  store_dir: ${quote(options.storeDir)}`,
    `  domain: ${quote(options.edge)}`,
    "  # fsync every write: a device's ack means the report survives a power cut at the edge.",
    "  sync_interval: always",
    "}",
    ...(options.mqttPort === undefined
      ? []
      : [`mqtt { listen: ${quote(formatHostPort(options.host, options.mqttPort))} }`]),
    ...(deviceAuth ? deviceAuthLines(deviceAuth) : []),
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
