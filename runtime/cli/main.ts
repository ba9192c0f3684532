/**
 * The `doppel` command line. `doppel start` runs a node; the other commands are clients of a
 * running node (`--server`, `DOPPEL_SERVER`, default localhost:50051). Every command takes
 * `--json` for machine-readable output. Failures print one line `doppel: CODE: message` on stderr
 * and exit with 1 (2 for usage errors).
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { DoppelError } from "../core/errors.ts";

/** Each command loads its module only when it runs: `doppel --help` loads neither node nor client. */
const client = () => import("./client-commands.ts");

/** Where the CLI writes: the process's stdout and stderr, or a test's buffers. */
export interface CliOutput {
  /** One line of the command's output (a newline is added). */
  readonly out: (line: string) => void;
  /** Text for stderr, as is (usage, help and failure lines). */
  readonly err: (text: string) => void;
}

const processOutput: CliOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (text) => process.stderr.write(text),
};

function program({ out, err }: CliOutput): Command {
  const doppel = new Command("doppel")
    .description("Doppel: digital twins as virtual actors. Run a node, or talk to one.")
    .showHelpAfterError()
    .configureOutput({ writeOut: (text) => out(text.replace(/\n$/, "")), writeErr: err })
    .exitOverride();
  const server = () =>
    new Option("-s, --server <host:port>", "node to talk to").env("DOPPEL_SERVER").default("localhost:50051");
  const common = (command: Command) =>
    command
      .addOption(server())
      .addOption(new Option("--token <key>", "API key, sent as authorization: Bearer").env("DOPPEL_TOKEN"))
      .addOption(new Option("--ca <file>", "connect over TLS, trusting this CA (PEM)").env("DOPPEL_CA"))
      .option("--cert <file>", "client certificate (PEM) for mTLS")
      .option("--key <file>", "client certificate's private key (PEM)")
      .option("--json", "machine-readable output")
      .option("--timeout <duration>", "deadline of each call, e.g. 5s");

  doppel
    .command("start")
    .description("run a node (embedded SQLite store and the example twins by default)")
    .option("-c, --config <file>", "JSON configuration file (env DOPPEL_CONFIG)")
    .option("-d, --data <dir>", "data folder for the embedded store (env DOPPEL_DATA_DIR)")
    .option("-l, --listen <host:port>", "gRPC address, or 'off' (env DOPPEL_LISTEN)")
    .option(
      "--http <host:port>",
      "HTTP address: REST API, WebSocket watch, console (env DOPPEL_HTTP; default off)",
    )
    .addOption(new Option("--store <kind>", "event store").choices(["sqlite", "memory"]))
    .option(
      "--cassandra <contact-points>",
      "use the Cassandra store at host:port[,host:port...] (env DOPPEL_CASSANDRA)",
    )
    .option("-t, --twins <module...>", "modules exporting twin classes (default: the example twins)")
    .option("--demo [devices]", "run a simulated device fleet")
    .option("--no-demo", "do not run the simulated fleet")
    .option("--node-id <id>", "this node's id (env DOPPEL_NODE_ID)")
    .option("--nats <url>", "serve devices over NATS/JetStream at this server (env DOPPEL_NATS)")
    .option("--redis <url>", "join a cluster: membership and shard leases in this Redis (env DOPPEL_REDIS)")
    .option("--cluster <name>", "cluster name (env DOPPEL_CLUSTER; default doppel)")
    .option("--shards <n>", "shards of the cluster (fixed for its lifetime; env DOPPEL_SHARDS; default 256)")
    .option("--metrics <host:port>", "serve Prometheus metrics on /metrics, or 'off' (env DOPPEL_METRICS)")
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent (env DOPPEL_LOG_LEVEL)")
    .option("--traces <mode>", "OpenTelemetry tracing: on, console or off (env DOPPEL_TRACES)")
    .option("--api-keys <file>", "require API keys from this file (env DOPPEL_API_KEYS; doppel keys create)")
    .option("--tls-cert <file>", "serve gRPC over TLS with this certificate (PEM)")
    .option("--tls-key <file>", "the TLS certificate's private key (PEM)")
    .option("--tls-client-ca <file>", "require client certificates signed by this CA (mTLS)")
    .option(
      "--edge <name>",
      "run as an edge node: store and forward to the cloud (env DOPPEL_EDGE; docs/edge.md)",
    )
    .option(
      "--upstream <url>",
      "the cloud's leaf node URL the edge's leaf server links to (env DOPPEL_UPSTREAM; doppel edge leaf-config)",
    )
    .option(
      "--edge-twins <types>",
      "with --edge: the twin types of a thick edge (comma-separated; env DOPPEL_EDGE_TWINS); validated, not runnable yet (docs/edge.md)",
    )
    .option(
      "--coap <host:port>",
      "serve CoAP (UDP) for constrained devices, or 'off' (env DOPPEL_COAP; docs/devices.md)",
    )
    .option(
      "--insecure",
      "allow a non-loopback --listen or --http without API keys and TLS, and plaintext --coap beyond loopback (warns)",
    )
    .option("--nats-ca <file>", "connect to NATS over TLS, trusting this CA (PEM)")
    .option("--nats-cert <file>", "client certificate for NATS (PEM)")
    .option("--nats-key <file>", "its private key (PEM)")
    .option("--redis-ca <file>", "connect to Redis over TLS, trusting this CA (PEM; or use rediss://)")
    .option("--redis-cert <file>", "client certificate for Redis (PEM)")
    .option("--redis-key <file>", "its private key (PEM)")
    .option("--cassandra-ca <file>", "connect to Cassandra over TLS, trusting this CA (PEM)")
    .option("--cassandra-cert <file>", "client certificate for Cassandra (PEM)")
    .option("--cassandra-key <file>", "its private key (PEM)")
    .action(async (flags) => (await import("./start.ts")).startCommand(flags, out));

  const edge = doppel.command("edge").description("edge nodes: store-and-forward over NATS leaf nodes");
  edge
    .command("status")
    .description("each edge registered with the cloud: leaf link up/down, backlog, last sync")
    .option("--nats <url>", "the cloud's NATS (env DOPPEL_NATS)")
    .option("--user <user>", "NATS user")
    .option("--password <password>", "NATS password")
    .option("--creds <file>", "NATS .creds file")
    .option("--stream <name>", "the cloud's ingress stream", "DOPPEL_INGRESS")
    .option("--json", "one JSON line per edge")
    .action(async (flags) => (await import("./edge-commands.ts")).edgeStatusCommand(flags, out));
  edge
    .command("leaf-config")
    .description("print the nats-server configuration of an edge's leaf server")
    .option("--edge <name>", "the edge's name (its JetStream domain; default: edge.name of --config)")
    .option(
      "--upstream <url>",
      "the cloud's leaf node URL (nats://user:pass@cloud:7422; default: edge.upstream of --config)",
    )
    .option("--listen <host:port>", "where devices and the edge node connect", "127.0.0.1:4222")
    .option("--mqtt <host:port>", "an MQTT listener for devices (same host as --listen)")
    .option("--store-dir <dir>", "JetStream storage", ".doppel/edge-nats")
    .option("--creds <file>", "the edge's leaf .creds file (instead of user:pass in the URL)")
    .option(
      "-c, --config <file>",
      "the edge node's configuration: with nats.deviceAuth the leaf server sends devices to the edge node's auth callout",
    )
    .action(async (flags) => (await import("./leaf-config-command.ts")).leafConfigCommand(flags, out));

  edge
    .command("hub-config")
    .description(
      "print the cloud nats-server's authorization block: one leaf-only user per edge, least permissions",
    )
    .option("--edge <name:password...>", "an edge's name (its hub user) and leaf password; repeat per edge")
    .action(async (flags) => (await import("./hub-config-command.ts")).hubConfigCommand(flags, out));

  doppel
    .command("sim")
    .description("run simulated devices against a Doppel cluster over NATS")
    .option("--server <url>", "NATS server (env DOPPEL_NATS)")
    .option("--type <type...>", "device types to simulate (default: every model)")
    .option("-n, --devices <n>", "number of devices", "10")
    .option("-r, --rate <r>", "reports per second per device", "1")
    .option("--prefix <prefix>", "device id prefix", "sim-")
    .option("-t, --twins <module...>", "modules exporting device models (default: the examples)")
    .option("--user <user>", "NATS user")
    .option("--password <password>", "NATS password")
    .option("--token <token>", "NATS token")
    .option("--creds <file>", "NATS .creds file")
    .option("--no-telemetry", "send reported state only")
    .option("--duration <duration>", "stop after this long (e.g. 30s)")
    .option("--json", "print progress and the summary as JSON lines")
    .action(async (flags) => (await import("./sim.ts")).simCommand(flags, out));

  const devices = doppel
    .command("devices")
    .description("device credentials for NATS and MQTT (auth callout; see docs/security.md)");
  const deviceOptions = (command: Command) =>
    command
      .option(
        "--credentials-file <file>",
        "the credentials file (default: from --config, or <data>/device-credentials.json)",
      )
      .option("-c, --config <file>", "the node's JSON configuration file")
      .option("-d, --data <dir>", "the node's data folder (env DOPPEL_DATA_DIR)")
      .option("--json", "machine-readable output");
  const deviceCommands = () => import("./device-commands.ts");
  deviceOptions(
    devices.command("provision").argument("<type/id>").description("issue a credential (printed once)"),
  ).action(async (target, flags) => (await deviceCommands()).provision(target, flags, out));
  deviceOptions(devices.command("list").description("list devices with a credential")).action(async (flags) =>
    (await deviceCommands()).list(flags, out),
  );
  deviceOptions(
    devices
      .command("revoke")
      .argument("<type/id>")
      .description("revoke a credential: refused at next connect, disconnected by running nodes"),
  ).action(async (target, flags) => (await deviceCommands()).revoke(target, flags, out));

  common(
    doppel.command("get").argument("<type/id>").description("show a twin's state, shadow and version"),
  ).action(async (target, flags) => (await client()).get(target, flags, out));
  common(
    doppel
      .command("query")
      .argument("<type>")
      .description("list twins of a type, filtered (e.g. --where 'reported.temperature > 30')")
      .option("-w, --where <expr>", "filter expression")
      .option("-n, --limit <n>", "page size (1-1000)")
      .option("--page-token <token>", "continue from a previous page")
      .option("--all", "follow every page"),
  ).action(async (type, flags) => (await client()).query(type, flags, out));
  common(
    doppel
      .command("invoke")
      .argument("<type/id>")
      .argument("<command>")
      .argument("[json-args]", "command arguments as a JSON object")
      .description("run a command on a twin")
      .option("--if-version <n>", "only if the twin is at this version"),
  ).action(async (target, command, args, flags) =>
    (await client()).invoke(target, command, args, flags, out),
  );
  common(
    doppel
      .command("desire")
      .argument("<type/id>")
      .argument("<json-patch>", "merge patch of desired state (null deletes)")
      .description("change a twin's desired state")
      .option("--if-version <n>", "only if the twin is at this version"),
  ).action(async (target, patch, flags) => (await client()).desire(target, patch, flags, out));
  common(
    doppel
      .command("report")
      .argument("<type/id>")
      .argument("<json-patch>", "merge patch of reported state")
      .description("report device state on a device's behalf")
      .option("--message-id <id>", "deduplication id"),
  ).action(async (target, patch, flags) => (await client()).report(target, patch, flags, out));
  common(
    doppel
      .command("watch")
      .argument("<type/id>")
      .description("stream a twin's changes until interrupted")
      .option("--skip-current", "do not print the current state first"),
  ).action(async (target, flags) => {
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    return (await client()).watch(target, flags, out, abort.signal);
  });
  common(
    doppel
      .command("history")
      .argument("<type/id>")
      .description("print a twin's events")
      .option("--since <time>", "ISO time, epoch ms, or a duration ago (10m)")
      .option("--until <time>", "ISO time, epoch ms, or a duration ago")
      .option("--from-version <n>")
      .option("--to-version <n>")
      .option("-n, --limit <n>"),
  ).action(async (target, flags) => (await client()).history(target, flags, out));
  common(
    doppel
      .command("telemetry")
      .argument("<type/id>")
      .description("print a twin's telemetry samples")
      .option("--since <time>", "default 1h ago")
      .option("--until <time>")
      .option("--interval <duration>", "downsample into buckets (min/max/avg/count)")
      .option("-n, --limit <n>"),
  ).action(async (target, flags) => (await client()).telemetry(target, flags, out));
  common(
    doppel
      .command("cluster")
      .description("show the cluster: nodes, shards per node, resident twins, lease epochs")
      .option("--shards", "list every shard with its owner and lease epoch"),
  ).action(async (flags) => (await client()).cluster(flags, out));
  common(doppel.command("types").description("list the node's twin types and their commands")).action(
    async (flags) => (await client()).types(flags, out),
  );
  const keys = doppel.command("keys").description("manage the API keys file a node reads (--api-keys)");
  const keysFile = () =>
    new Option("-f, --file <file>", "API keys file").env("DOPPEL_API_KEYS").default(".doppel/api-keys.json");
  keys
    .command("create")
    .description("create an API key and print it once (only its hash is kept)")
    .addOption(keysFile())
    .requiredOption("--scopes <list>", "comma-separated: read, write, command, admin")
    .option("--types <list>", "only twins of these types (comma-separated)")
    .option("--prefix <list>", "only twins whose id starts with one of these (comma-separated)")
    .option("--rate <n>", "calls per second allowed (token bucket)")
    .option("--burst <n>", "calls allowed in a burst (default: one second's worth)")
    .option("--max-twins <n>", "most twins the key may create (counted in the event store)")
    .option("--description <text>", "what the key is for")
    .option("--json", "machine-readable output")
    .action(async (flags) => (await import("./keys.ts")).createKeyCommand(flags, out));
  keys
    .command("list")
    .description("list API keys (ids, scopes, restrictions, twins created / quota; never the keys)")
    .addOption(keysFile())
    .option("-c, --config <file>", "the node's configuration file, for its store (env DOPPEL_CONFIG)")
    .option("-d, --data <dir>", "the node's data folder, for its store (env DOPPEL_DATA_DIR)")
    .option("--cassandra <contact-points>", "the node's Cassandra store (env DOPPEL_CASSANDRA)")
    .option("--json", "machine-readable output")
    .action(async (flags) => (await import("./keys.ts")).listKeysCommand(flags, out));
  keys
    .command("update")
    .argument("<id>", "key id (from doppel keys list)")
    .description("change a key's scopes, restrictions or limits in place (the key stays valid)")
    .addOption(keysFile())
    .option("--scopes <list>", "comma-separated: read, write, command, admin")
    .option("--types <list>", "only twins of these types (comma-separated; none: any type)")
    .option("--prefix <list>", "only twins whose id starts with one of these (none: any id)")
    .option("--rate <n>", "calls per second allowed (none: the node's default rate)")
    .option("--burst <n>", "calls allowed in a burst (none: one second's worth)")
    .option("--max-twins <n>", "most twins the key may create, counting those it has (none: no quota)")
    .option("--description <text>", "what the key is for (none: remove)")
    .option("--json", "machine-readable output")
    .action(async (id, flags) => (await import("./keys.ts")).updateKeyCommand(id, flags, out));
  keys
    .command("revoke")
    .argument("<id>", "key id (from doppel keys list)")
    .description("revoke an API key (nodes refuse it within a second)")
    .addOption(keysFile())
    .option("--json", "machine-readable output")
    .action(async (id, flags) => (await import("./keys.ts")).revokeKeyCommand(id, flags, out));

  common(doppel.command("health").description("check the node's gRPC health")).action(async (flags) =>
    (await client()).health(flags, out),
  );
  return doppel;
}

/**
 * Runs the CLI with `argv` (without node and script) and resolves with its exit code: 0, 1 for a
 * failure (one line `doppel: CODE: message`), 2 for a usage error.
 */
export async function main(argv: readonly string[], output: CliOutput = processOutput): Promise<number> {
  try {
    await program(output).parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const failure = DoppelError.from(error);
    output.err(`doppel: ${failure.code}: ${failure.message.replace(/\s*\n\s*/g, " ")}\n`);
    return 1;
  }
}

/** Runs `main` with the process's arguments and sets its exit code (a command may have set one already). */
export async function runAsProgram(): Promise<void> {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exitCode = code;
}

// `bin/doppel.js` calls runAsProgram; run directly (`tsx runtime/cli/main.ts`, npm run dev), this file runs itself.
const script = process.argv[1];
if (script !== undefined && realpathSync(script) === realpathSync(fileURLToPath(import.meta.url)))
  await runAsProgram();
