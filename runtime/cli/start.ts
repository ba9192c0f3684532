/**
 * `doppel start`: runs a node. Each setting comes from its flag, else its `DOPPEL_*` environment
 * variable, else the JSON config file (`--config`), else the default (see `start-config.ts`). The
 * node runs until SIGINT/SIGTERM, then stops gracefully (every pending write is persisted).
 */

import { FailedPrecondition } from "../core/errors.ts";
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
  const coap = node.coap;
  if (coap) lines.push(`  CoAP    coap://${coap.address}/v1/<type>/<id>/reported|telemetry|desired`);
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

/** A thin edge node (docs/edge.md): store-and-forward beside the edge's leaf nats-server. */
async function startEdge(config: NodeConfig, out: (line: string) => void): Promise<void> {
  const edge = config.edge!;
  if (edge.twins)
    throw new FailedPrecondition(
      `edge.twins (${edge.twins.join(", ")}): doppel start does not run a thick edge yet; embed EdgeLogPublisher and CloudReplication (docs/edge.md), or start a thin edge without edge twins`,
    );
  // The twin modules' `edge` declarations say how their telemetry is reduced before forwarding.
  const modules = await loadTwinModules(config.twins ?? [EXAMPLE_TWINS]);
  const node = await EdgeNode.start(config, { twins: modules.twins });
  const lines = [
    `Doppel edge node ${node.id} (edge ${edge.name}) is running`,
    `  leaf    NATS ${[config.nats?.servers ?? []].flat().join(",")} (JetStream domain ${edge.name}; cloud domain ${edge.hubDomain})`,
    `  cloud   ${edge.upstream ?? "(the leaf server's remote)"}`,
    `  buffer  stream ${edge.buffer.stream}: ${edge.buffer.maxBytes} bytes, ${edge.buffer.maxAge} ms; when full: discard ${edge.buffer.discard}`,
    `  link    ${node.status.linkUp ? "up" : "down (buffering; registers once the cloud answers)"}`,
  ];
  if (node.metricsAddress) lines.push(`  metrics http://${node.metricsAddress}/metrics`);
  lines.push("", "Check it from the cloud: npx doppel edge status --nats <cloud NATS>", "Stop with Ctrl-C.");
  for (const line of lines) out(line);
  await runUntilSignal(node, out);
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
