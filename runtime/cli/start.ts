/**
 * `doppel start`: runs a node. Each setting comes from its flag, else its `DOPPEL_*` environment
 * variable, else the JSON config file (`--config`), else the default (see `start-config.ts`). The
 * node runs until SIGINT/SIGTERM, then stops gracefully (every pending write is persisted).
 */

import { deviceCredentialsPath } from "../node/device-settings.ts";
import { EdgeNode } from "../node/edge-node.ts";
import { DoppelNode } from "../node/node.ts";
import { compileConfig, type NodeConfig } from "../node/options.ts";
import { buildConfig, configFileOf, type StartFlags } from "./start-config.ts";
import { EXAMPLE_TWINS, loadTwinModules } from "./twin-modules.ts";

/** Starts a node and keeps it running until a signal; prints how to reach it. */
export async function startCommand(flags: StartFlags, out: (line: string) => void): Promise<void> {
  const file = configFileOf(flags, process.env);
  const config = compileConfig(
    buildConfig(flags, process.env),
    file ? `config ${file.value}` : "configuration",
  );
  if (config.edge) return startEdge(config, out);
  const modules = await loadTwinModules(config.twins ?? [EXAMPLE_TWINS]);
  const node = await DoppelNode.start(config, { twins: modules.twins, devices: modules.devices });
  const types = node.registry.list().map((t) => t.name);
  const address = node.grpcAddress;
  const store = storeLine(config);
  const lines = [
    `Doppel node ${node.id} is running`,
    `  twins   ${types.join(", ")}`,
    `  store   ${store}`,
    `  devices ${
      config.nats
        ? `NATS ${[config.nats.servers].flat().join(",")} (JetStream stream ${config.nats.stream.name}, ${config.shards} shards)`
        : "in-process"
    }`,
    ...(node.replication
      ? ["  edges   thick edges' logs applied to this store (stream DOPPEL_EDGE_LOGS)"]
      : []),
    `  gRPC    ${address ?? "off"}${
      address ? `   ${node.grpcSecurity}${config.grpc.tls ? "" : `; grpcurl -plaintext ${address} list`}` : ""
    }`,
    `  HTTP    ${node.httpUrl ?? "off"}${node.httpUrl ? `   ${node.httpSecurity}; REST API ${node.httpUrl}/v1 (OpenAPI: ${node.httpUrl}/v1/openapi.json)` : ""}`,
  ];
  if (node.httpUrl) lines.push(`  console ${node.httpUrl}/   (open it in a browser)`);
  if (config.cluster) {
    const view = await node.cluster();
    lines.push(
      `  cluster ${config.cluster.name} via ${config.cluster.redis}: ${view.nodes.length} member(s), ${config.shards} shards`,
    );
  }
  if (node.metricsAddress) lines.push(`  metrics http://${node.metricsAddress}/metrics`);
  if (node.coap) lines.push(coapLine(node.coap.address));
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
  await runUntilSignal(node, out);
}

/**
 * An edge node (docs/edge.md): store-and-forward beside the edge's leaf nats-server; a thick edge
 * (`edge.twins`) also runs those twin types there, replicating their log to the cloud.
 */
async function startEdge(config: NodeConfig, out: (line: string) => void): Promise<void> {
  const edge = config.edge!;
  // The twin modules' `edge` declarations say how their telemetry is reduced before forwarding.
  const modules = await loadTwinModules(config.twins ?? [EXAMPLE_TWINS]);
  const node = await EdgeNode.start(config, { twins: modules.twins });
  const forwarded = modules.twins.map((twin) => twin.type).filter((type) => !edge.twins?.includes(type));
  const lines = [
    `Doppel edge node ${node.id} (edge ${edge.name}${edge.twins ? ", thick" : ""}) is running`,
    `  leaf    NATS ${[config.nats?.servers ?? []].flat().join(",")} (JetStream domain ${edge.name}; cloud domain ${edge.hubDomain})`,
    `  cloud   ${edge.upstream ?? "(the leaf server's remote)"}`,
    `  buffer  stream ${edge.buffer.stream}: ${edge.buffer.maxBytes} bytes, ${edge.buffer.maxAge} ms; when full: discard ${edge.buffer.discard}`,
    `  link    ${node.status.linkUp ? "up" : "down (buffering; registers once the cloud answers)"}`,
    `  devices ${
      node.deviceAuth
        ? `credentials checked here (the leaf server's auth callout; ${deviceCredentialsPath(config)})`
        : "the leaf server's own authorization (no nats.deviceAuth)"
    }`,
  ];
  const thick = node.thick?.node;
  if (thick) {
    const address = thick.grpcAddress;
    lines.push(
      `  twins   ${edge.twins!.join(", ")} at the edge (store ${storeLine(config)}); log stream DOPPEL_EDGE_LOG replicated to the cloud`,
      `  forward ${forwarded.length > 0 ? `${forwarded.join(", ")} to the cloud's twins` : "(no other types)"}`,
      `  gRPC    ${address ?? "off"}${address ? `   ${thick.grpcSecurity}` : ""}`,
      `  HTTP    ${thick.httpUrl ?? "off"}`,
    );
  }
  if (node.metricsAddress) lines.push(`  metrics http://${node.metricsAddress}/metrics`);
  if (node.coap) lines.push(coapLine(node.coap.address));
  const address = thick?.grpcAddress;
  if (address) {
    const type = edge.twins![0]!;
    lines.push(
      "",
      "Try, in another terminal (here, or in the cloud: its copies are read-only, commands go down):",
      `  npx doppel query ${type} --server ${address}`,
      `  npx doppel history ${type}/<id> --limit 20 --server ${address}`,
    );
  }
  lines.push("", "Check it from the cloud: npx doppel edge status --nats <cloud NATS>", "Stop with Ctrl-C.");
  for (const line of lines) out(line);
  await runUntilSignal(node, out);
}

/** The start output's line of a CoAP listener. */
function coapLine(address: string): string {
  return `  CoAP    coap://${address}/v1/<type>/<id>/reported|telemetry|desired`;
}

/** The store of the configuration, as the start output names it. */
function storeLine(config: NodeConfig): string {
  return config.store.kind === "sqlite"
    ? `sqlite ${config.store.path ?? `${config.dataDir}/doppel.db`}`
    : config.store.kind === "cassandra"
      ? `cassandra ${config.store.contactPoints.join(",")} keyspace ${config.store.keyspace}`
      : config.store.kind;
}

/** Keeps the process up until SIGINT/SIGTERM, then stops `node` gracefully. */
async function runUntilSignal(node: { stop(): Promise<void> }, out: (line: string) => void): Promise<void> {
  // A node with nothing listening (`--listen off`, in-process devices) holds no socket: this
  // keeps the process up until a signal stops it.
  const keepAlive = setInterval(() => {}, 2 ** 30);
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
  clearInterval(keepAlive);
}
