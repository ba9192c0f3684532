/**
 * Where `doppel start` takes its configuration from. Each setting is taken from the first of:
 * its flag, its environment variable, the JSON config file, the schema's default. The library
 * (everything outside `runtime/cli/`) reads no environment variable: this file is where the
 * process environment becomes configuration, with one naming scheme.
 *
 * | variable           | flag            | configuration                    |
 * |--------------------|-----------------|----------------------------------|
 * | `DOPPEL_CONFIG`    | `--config`      | (the file itself)                |
 * | `DOPPEL_DATA_DIR`  | `--data`        | `dataDir`                        |
 * | `DOPPEL_LISTEN`    | `--listen`      | `grpc.listen` (`off`: none)      |
 * | `DOPPEL_HTTP`      | `--http`        | `http.listen` (`off`: none)      |
 * | `DOPPEL_NODE_ID`   | `--node-id`     | `nodeId`                         |
 * | `DOPPEL_NATS`      | `--nats`        | `nats.servers` (comma-separated) |
 * | `DOPPEL_REDIS`     | `--redis`       | `cluster.redis`                  |
 * | `DOPPEL_CLUSTER`   | `--cluster`     | `cluster.name`                   |
 * | `DOPPEL_CASSANDRA` | `--cassandra`   | `store.contactPoints`            |
 * | `DOPPEL_SHARDS`    | `--shards`      | `shards`                         |
 * | `DOPPEL_METRICS`   | `--metrics`     | `metrics.listen` (`off`: none)   |
 * | `DOPPEL_LOG_LEVEL` | `--log-level`   | `log.level`                      |
 * | `DOPPEL_TRACES`    | `--traces`      | `tracing` (`on`, `console`, `off`/`0`) |
 * | `DOPPEL_API_KEYS`  | `--api-keys`    | `grpc.apiKeys` (also `doppel keys --file`) |
 * | `DOPPEL_COAP`      | `--coap`        | `coap.listen` (`off`: none)      |
 * | `DOPPEL_EDGE`      | `--edge`        | `edge.name` (run as an edge node)         |
 * | `DOPPEL_UPSTREAM`  | `--upstream`    | `edge.upstream` (the cloud's leaf node URL) |
 * | `DOPPEL_EDGE_TWINS` | `--edge-twins` | `edge.twins` (comma-separated: a thick edge) |
 *
 * `--tls-cert`, `--tls-key`, `--tls-client-ca` set `grpc.tls`; `--insecure` sets `grpc.insecure` (and
 * `coap.insecure` when CoAP is served);
 * `--nats-ca|cert|key` set `nats.tls`, `--redis-ca|cert|key` set `cluster.redisTls`, and
 * `--cassandra-ca|cert|key` set `store.tls` (`caFile`, `certFile`, `keyFile`).
 *
 * The client commands read `DOPPEL_SERVER` (`--server`); `DOPPEL_TOKEN` is reserved for the
 * client's API key.
 */
import { readFileSync } from "node:fs";
import { InvalidArgument } from "../core/errors.ts";
import type { NodeConfigInput } from "../node/options.ts";
import { parseContactPoints } from "../persistence/cassandra/options.ts";

export interface StartFlags {
  readonly config?: string;
  readonly data?: string;
  readonly listen?: string;
  /** HTTP listener host:port (REST API, console). */
  readonly http?: string;
  readonly store?: string;
  /** Cassandra contact points (`host:port,...`): use the Cassandra store. */
  readonly cassandra?: string;
  readonly twins?: string[];
  readonly demo?: boolean | string;
  readonly logLevel?: string;
  readonly nodeId?: string;
  readonly nats?: string;
  /** Redis URL: join a cluster (membership and shard leases). */
  readonly redis?: string;
  /** Cluster name (with --redis). */
  readonly cluster?: string;
  readonly shards?: string;
  /** Prometheus metrics endpoint host:port. */
  readonly metrics?: string;
  /** Tracing: `on`, `console` or `off`. */
  readonly traces?: string;
  /** API keys file. */
  readonly apiKeys?: string;
  /** CoAP (UDP) listen address for constrained devices. */
  readonly coap?: string;
  /** Run as the edge node of this name (docs/edge.md). */
  readonly edge?: string;
  /** The cloud's leaf node URL (with --edge). */
  readonly upstream?: string;
  /** The twin types that run at this edge, comma-separated (with --edge: a thick edge). */
  readonly edgeTwins?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsClientCa?: string;
  /** Serve a non-loopback address without keys and TLS. */
  readonly insecure?: boolean;
  /** TLS files of the NATS, Redis and Cassandra connections (PEM). */
  readonly natsCa?: string;
  readonly natsCert?: string;
  readonly natsKey?: string;
  readonly redisCa?: string;
  readonly redisCert?: string;
  readonly redisKey?: string;
  readonly cassandraCa?: string;
  readonly cassandraCert?: string;
  readonly cassandraKey?: string;
}

/** The TLS files given as flags, under the names a section uses; undefined when none is given. */
function tlsFlags(
  given: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined },
  names: { ca: string; cert: string; key: string },
): Record<string, string> | undefined {
  const entries = Object.entries(given).filter((entry): entry is [string, string] => entry[1] !== undefined);
  if (entries.length === 0) return undefined;
  return Object.fromEntries(entries.map(([name, value]) => [names[name as "ca" | "cert" | "key"], value]));
}

/** The environment variables `doppel start` reads, by the flag each stands in for. */
export const START_ENV = {
  config: "DOPPEL_CONFIG",
  data: "DOPPEL_DATA_DIR",
  listen: "DOPPEL_LISTEN",
  http: "DOPPEL_HTTP",
  nodeId: "DOPPEL_NODE_ID",
  nats: "DOPPEL_NATS",
  redis: "DOPPEL_REDIS",
  cluster: "DOPPEL_CLUSTER",
  cassandra: "DOPPEL_CASSANDRA",
  shards: "DOPPEL_SHARDS",
  metrics: "DOPPEL_METRICS",
  logLevel: "DOPPEL_LOG_LEVEL",
  traces: "DOPPEL_TRACES",
  apiKeys: "DOPPEL_API_KEYS",
  coap: "DOPPEL_COAP",
  edge: "DOPPEL_EDGE",
  upstream: "DOPPEL_UPSTREAM",
  edgeTwins: "DOPPEL_EDGE_TWINS",
} as const satisfies Partial<Record<keyof StartFlags, string>>;

type Sourced = keyof typeof START_ENV;

/** A setting's value and where it came from (`--flag` or `VARIABLE`), for error messages. */
interface Setting {
  readonly value: string;
  readonly source: string;
}

const FLAG_NAMES: Record<Sourced, string> = {
  config: "--config",
  data: "--data",
  listen: "--listen",
  http: "--http",
  nodeId: "--node-id",
  nats: "--nats",
  redis: "--redis",
  cluster: "--cluster",
  cassandra: "--cassandra",
  shards: "--shards",
  metrics: "--metrics",
  logLevel: "--log-level",
  traces: "--traces",
  apiKeys: "--api-keys",
  coap: "--coap",
  edge: "--edge",
  upstream: "--upstream",
  edgeTwins: "--edge-twins",
};

/** The flag if given, else the environment variable if set and not empty. */
function setting(flags: StartFlags, env: NodeJS.ProcessEnv, name: Sourced): Setting | undefined {
  const flag = flags[name];
  if (flag !== undefined) return { value: flag, source: FLAG_NAMES[name] };
  const variable = START_ENV[name];
  const value = env[variable];
  return value === undefined || value === "" ? undefined : { value, source: variable };
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new InvalidArgument(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new Error("not a JSON object");
    return value as Record<string, unknown>;
  } catch (error) {
    throw new InvalidArgument(`config file ${path} is not a JSON object: ${(error as Error).message}`);
  }
}

const section = (file: Record<string, unknown>, name: string): Record<string, unknown> => {
  const value = file[name];
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? { ...(value as Record<string, unknown>) }
    : {};
};

/** `off` (any case) turns an address setting off. */
const isOff = (value: string) => value.toLowerCase() === "off";

/** What `DOPPEL_TRACES` / `--traces` mean: `on`/`1`/`true`, `console`, `off`/`0`/`false`. */
function tracing({ value, source }: Setting): { enabled: boolean; exporter: "none" | "console" } {
  const word = value.trim().toLowerCase();
  if (["on", "1", "true"].includes(word)) return { enabled: true, exporter: "none" };
  if (word === "console") return { enabled: true, exporter: "console" };
  if (["off", "0", "false"].includes(word)) return { enabled: false, exporter: "none" };
  throw new InvalidArgument(`${source} must be on, console or off (or 1/0), got ${JSON.stringify(value)}`);
}

/** A comma-separated list of twin types (`thermostat,valve`); the schema checks each name. */
function typeList({ value, source }: Setting): string[] {
  const types = value.split(",").map((t) => t.trim());
  if (types.some((t) => t.length === 0))
    throw new InvalidArgument(
      `${source} must be twin types separated by commas, got ${JSON.stringify(value)}`,
    );
  return types;
}

/** The name of the config file to read, if any: `--config`, else `DOPPEL_CONFIG`. */
export function configFileOf(flags: StartFlags, env: NodeJS.ProcessEnv): Setting | undefined {
  return setting(flags, env, "config");
}

/**
 * Builds the node configuration from flags, environment and config file (in that order of
 * precedence; the schema supplies defaults). Only the settings given are set, so the schema
 * still refuses a bad value by its field name.
 */
export function buildConfig(flags: StartFlags, env: NodeJS.ProcessEnv): NodeConfigInput {
  const configFile = configFileOf(flags, env);
  const file = configFile ? readConfigFile(configFile.value) : {};
  const config: Record<string, unknown> = { ...file };
  const get = (name: Sourced) => setting(flags, env, name);

  const dataDir = get("data");
  if (dataDir) config["dataDir"] = dataDir.value;
  const grpc = section(file, "grpc");
  const listen = get("listen");
  if (listen) grpc["listen"] = isOff(listen.value) ? false : listen.value;
  const apiKeys = get("apiKeys");
  if (apiKeys) grpc["apiKeys"] = apiKeys.value;
  if (flags.tlsCert !== undefined || flags.tlsKey !== undefined || flags.tlsClientCa !== undefined) {
    grpc["tls"] = {
      ...section(grpc, "tls"),
      ...(flags.tlsCert !== undefined ? { cert: flags.tlsCert } : {}),
      ...(flags.tlsKey !== undefined ? { key: flags.tlsKey } : {}),
      ...(flags.tlsClientCa !== undefined ? { clientCa: flags.tlsClientCa } : {}),
    };
  }
  if (flags.insecure) grpc["insecure"] = true;
  if (Object.keys(grpc).length > 0) config["grpc"] = grpc;
  const http = get("http");
  if (http) config["http"] = { ...section(file, "http"), listen: isOff(http.value) ? false : http.value };

  if (flags.store) config["store"] = { kind: flags.store };
  const cassandra = get("cassandra");
  // A --store flag beats DOPPEL_CASSANDRA; given both as flags, they contradict each other.
  if (cassandra && flags.store && cassandra.source === "--cassandra")
    throw new InvalidArgument("give either --store or --cassandra, not both");
  if (cassandra && !flags.store) {
    // Keeps the file's other Cassandra settings (keyspace, consistency...), replaces the contact points.
    const fileStore = section(file, "store");
    const base = fileStore["kind"] === "cassandra" ? fileStore : {};
    config["store"] = { ...base, kind: "cassandra", contactPoints: parseContactPoints(cassandra.value) };
  }

  if (flags.twins?.length) config["twins"] = flags.twins;
  const nodeId = get("nodeId");
  if (nodeId) config["nodeId"] = nodeId.value;

  const nats = get("nats");
  if (nats) {
    const servers = nats.value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    if (servers.length === 0) throw new InvalidArgument(`${nats.source} must name a NATS server URL`);
    config["nats"] = { ...section(file, "nats"), servers: servers.length === 1 ? servers[0] : servers };
  }

  const redis = get("redis");
  const cluster = get("cluster");
  if (redis || cluster) {
    const fileCluster = section(file, "cluster");
    config["cluster"] = {
      ...fileCluster,
      ...(redis ? { redis: redis.value } : {}),
      name: cluster?.value ?? fileCluster["name"] ?? "doppel",
    };
  }

  const shards = get("shards");
  if (shards) {
    if (!/^\d+$/.test(shards.value))
      throw new InvalidArgument(`${shards.source} must be a positive integer, got ${shards.value}`);
    config["shards"] = Number(shards.value);
  }
  const metrics = get("metrics");
  if (metrics) config["metrics"] = { listen: isOff(metrics.value) ? false : metrics.value };
  const logLevel = get("logLevel");
  if (logLevel) config["log"] = { ...section(file, "log"), level: logLevel.value };
  const traces = get("traces");
  if (traces) config["tracing"] = tracing(traces);

  const coap = get("coap");
  if (coap) {
    if (isOff(coap.value)) delete config["coap"];
    else config["coap"] = { ...section(file, "coap"), listen: coap.value };
  }
  if (flags.insecure && config["coap"] !== undefined)
    config["coap"] = { ...section(config, "coap"), insecure: true };
  const edge = get("edge");
  const upstream = get("upstream");
  const edgeTwins = get("edgeTwins");
  for (const edgeOnly of [upstream, edgeTwins]) {
    if (edgeOnly && !edge && !section(file, "edge")["name"])
      throw new InvalidArgument(`${edgeOnly.source} is for an edge node: give --edge NAME too`);
  }
  if (edge || upstream || edgeTwins) {
    config["edge"] = {
      ...section(file, "edge"),
      ...(edge ? { name: edge.value } : {}),
      ...(upstream ? { upstream: upstream.value } : {}),
      ...(edgeTwins ? { twins: typeList(edgeTwins) } : {}),
    };
  }

  const plain = { ca: "ca", cert: "cert", key: "key" };
  const natsTls = tlsFlags({ ca: flags.natsCa, cert: flags.natsCert, key: flags.natsKey }, plain);
  if (natsTls) {
    const nats = section(config, "nats");
    config["nats"] = { ...nats, tls: { ...section(nats, "tls"), ...natsTls } };
  }
  const redisTls = tlsFlags({ ca: flags.redisCa, cert: flags.redisCert, key: flags.redisKey }, plain);
  if (redisTls) {
    const clusterSection = section(config, "cluster");
    config["cluster"] = {
      ...clusterSection,
      redisTls: { ...section(clusterSection, "redisTls"), ...redisTls },
    };
  }
  const cassandraTls = tlsFlags(
    { ca: flags.cassandraCa, cert: flags.cassandraCert, key: flags.cassandraKey },
    { ca: "caFile", cert: "certFile", key: "keyFile" },
  );
  if (cassandraTls) {
    const store = section(config, "store");
    config["store"] = { ...store, tls: { ...section(store, "tls"), ...cassandraTls } };
  }

  if (flags.demo === true) config["demo"] = section(file, "demo");
  else if (typeof flags.demo === "string") config["demo"] = { devices: Number(flags.demo) };
  else if (flags.demo === false) delete config["demo"];
  return config as NodeConfigInput;
}
