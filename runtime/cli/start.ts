/**
 * `doppel start`: runs a node. Configuration comes from (later wins) the defaults, a JSON config
 * file (`--config`), the environment (`DOPPEL_DATA_DIR`, `DOPPEL_LISTEN`) and flags. The node runs
 * until SIGINT/SIGTERM, then stops gracefully (every pending write is persisted).
 */
import { readFileSync } from "node:fs";
import { InvalidArgument } from "../core/errors.ts";
import { DoppelNode } from "../node/node.ts";
import { compileConfig, type NodeConfigInput } from "../node/options.ts";
import { parseContactPoints } from "../persistence/cassandra/options.ts";
import { EXAMPLE_TWINS, loadTwinModules } from "./twin-modules.ts";

export interface StartFlags {
  readonly config?: string;
  readonly data?: string;
  readonly listen?: string;
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

/** Builds the node configuration from file, environment and flags (later wins). */
export function buildConfig(flags: StartFlags, env: NodeJS.ProcessEnv): NodeConfigInput {
  const file = flags.config ? readConfigFile(flags.config) : {};
  const config: Record<string, unknown> = { ...file };
  const grpc = { ...(file["grpc"] as object | undefined) } as Record<string, unknown>;
  const dataDir = flags.data ?? env["DOPPEL_DATA_DIR"];
  if (dataDir) config["dataDir"] = dataDir;
  const listen = flags.listen ?? env["DOPPEL_LISTEN"];
  if (listen) grpc["listen"] = listen === "off" ? false : listen;
  if (Object.keys(grpc).length > 0) config["grpc"] = grpc;
  if (flags.store) config["store"] = { kind: flags.store };
  if (flags.cassandra !== undefined) {
    if (flags.store) throw new InvalidArgument("give either --store or --cassandra, not both");
    // Keeps the file's other Cassandra settings (keyspace, consistency...), replaces the contact points.
    const fileStore = file["store"] as Record<string, unknown> | undefined;
    const base = fileStore?.["kind"] === "cassandra" ? fileStore : {};
    config["store"] = { ...base, kind: "cassandra", contactPoints: parseContactPoints(flags.cassandra) };
  }
  if (flags.twins?.length) config["twins"] = flags.twins;
  if (flags.nodeId) config["nodeId"] = flags.nodeId;
  const nats = flags.nats ?? env["DOPPEL_NATS_URL"];
  if (nats) config["nats"] = { ...(file["nats"] as object | undefined), servers: nats };
  const redis = flags.redis ?? env["DOPPEL_REDIS_URL"];
  const fileCluster = file["cluster"] as Record<string, unknown> | undefined;
  if (redis || flags.cluster) {
    config["cluster"] = {
      ...fileCluster,
      ...(redis ? { redis } : {}),
      name: flags.cluster ?? fileCluster?.["name"] ?? "doppel",
    };
  }
  if (flags.shards !== undefined) {
    if (!/^\d+$/.test(flags.shards))
      throw new InvalidArgument(`--shards must be a positive integer, got ${flags.shards}`);
    config["shards"] = Number(flags.shards);
  }
  if (flags.metrics) config["metrics"] = { listen: flags.metrics };
  if (flags.logLevel) config["log"] = { level: flags.logLevel };
  if (flags.demo === true) config["demo"] = { ...(file["demo"] as object | undefined) };
  else if (typeof flags.demo === "string") config["demo"] = { devices: Number(flags.demo) };
  else if (flags.demo === false) delete config["demo"];
  return config as NodeConfigInput;
}

/** Starts a node and keeps it running until a signal; prints how to reach it. */
export async function startCommand(flags: StartFlags, out: (line: string) => void): Promise<void> {
  const config = compileConfig(
    buildConfig(flags, process.env),
    flags.config ? `config ${flags.config}` : "configuration",
  );
  const modules = await loadTwinModules(config.twins ?? [EXAMPLE_TWINS]);
  const node = await DoppelNode.start(config, { twins: modules.twins, devices: modules.devices });
  const types = node.registry.list().map((t) => t.name);
  const address = node.grpcAddress;
  const store =
    config.store.kind === "sqlite"
      ? `sqlite ${config.store.path ?? `${config.dataDir}/doppel.db`}`
      : config.store.kind === "cassandra"
        ? `cassandra ${config.store.contactPoints.join(",")} keyspace ${config.store.keyspace}`
        : config.store.kind;
  const lines = [
    `Doppel node ${node.id} is running`,
    `  twins   ${types.join(", ")}`,
    `  store   ${store}`,
    `  devices ${
      config.nats
        ? `NATS ${[config.nats.servers].flat().join(",")} (JetStream stream ${config.nats.stream.name}, ${config.shards} shards)`
        : "in-process"
    }`,
    `  gRPC    ${address ?? "off"}${address ? `   (grpcurl -plaintext ${address} list)` : ""}`,
  ];
  if (config.cluster) {
    const view = await node.cluster();
    lines.push(
      `  cluster ${config.cluster.name} via ${config.cluster.redis}: ${view.nodes.length} member(s), ${config.shards} shards`,
    );
  }
  if (node.metricsAddress) lines.push(`  metrics http://${node.metricsAddress}/metrics`);
  const fleet = node.fleet;
  if (fleet)
    lines.push(
      `  demo    ${fleet.ids.length} simulated devices reporting every ${config.demo?.interval ?? 0} ms`,
    );
  if (address) {
    const server = address === "localhost:50051" ? "" : ` --server ${address}`;
    const sample = fleet?.ids.find((id) => id.startsWith("thermostat/")) ?? "thermostat/t1";
    lines.push(
      "",
      "Try, in another terminal:",
      `  npx doppel types${server}`,
      `  npx doppel query thermostat --where 'reported.temperature < 19'${server}`,
      `  npx doppel get ${sample}${server}`,
      `  npx doppel invoke ${sample} setTarget '{"celsius": 23}'${server}`,
      `  npx doppel watch ${sample}${server}`,
      `  npx doppel history ${sample} --limit 20${server}`,
      `  npx doppel cluster${server}`,
    );
  }
  lines.push("", "Stop with Ctrl-C.");
  for (const line of lines) out(line);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        out(`${signal} again: exiting without waiting`);
        process.exit(130);
      }
      stopping = true;
      out(`${signal}: stopping (persisting pending work)...`);
      node.stop().then(resolve, (error: unknown) => {
        out(`stop failed: ${(error as Error).message}`);
        process.exitCode = 1;
        resolve();
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}
