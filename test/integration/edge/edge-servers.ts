/**
 * Two real nats-servers for the edge tests: a hub (the cloud's, JetStream domain `cloud`, a leaf
 * node port that asks for the edge's credentials; open, or locked per edge with `lockHub`) and a leaf (the edge's, written by Doppel's
 * `leafServerConfig`), each in a directory of its own on free loopback ports, and between them a
 * TCP relay the test can cut and restore: a real leaf-link outage while both servers keep running.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { createAccount } from "@nats-io/nkeys";
import { type LeafDeviceAuth, leafServerConfig, type NodeConfigInput } from "doppel/node";
import { type HubEdgeUser, hubAuthorizationConfig } from "../../../runtime/devices/edge/hub-config.ts";
import { leafDeviceAuth } from "../../../runtime/node/device-settings.ts";
import { compileConfig } from "../../../runtime/node/options.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { SourceRegistrar } from "../../../runtime/replication/source-registrar.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { accepting } from "../chaos/own-nats.ts";
import { eventually } from "../nats/harness.ts";

const BINARY = join(process.cwd(), ".infra/bin/nats-server");
export const HUB_DOMAIN = "cloud";
export const LEAF_USER = { user: "edge-plant", pass: "leaf-secret-1" };

/** A nats-server process started from a config file. */
export interface NatsProcess {
  readonly url: string;
  readonly port: number;
  /** The user a client of this server connects as, when it asks for one (a locked hub). */
  readonly credentials?: { readonly user: string; readonly pass: string };
  stop(): Promise<void>;
}

/** The cloud's own user on a locked hub: cloud nodes and the tests' cloud clients. */
export const CLOUD_USER = { user: "cloud", pass: "cloud-secret-1" };

/** How to connect to `server` (with its credentials, if it asks for them). */
export function hubConnection(server: NatsProcess): {
  servers: string;
  credentials?: { user: string; pass: string };
} {
  return server.credentials
    ? { servers: server.url, credentials: { ...server.credentials } }
    : { servers: server.url };
}

async function runNats(dir: string, name: string, config: string, port: number): Promise<NatsProcess> {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, config);
  const child: ChildProcess = spawn(BINARY, ["-c", file], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const until = Date.now() + 60_000;
  while (!(await accepting(port))) {
    if (exited) throw new Error(`nats-server ${name} exited while starting: ${stderr}`);
    if (Date.now() > until) throw new Error(`nats-server ${name} did not start within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/**
 * The cloud's server: JetStream domain `cloud`, leaf node port with the edge's credentials. With
 * `edges` it is locked: one leaf-only user per edge with that edge's least permissions
 * (`hubAuthorizationConfig`, as `doppel edge hub-config` prints it) and the cloud's own
 * {@link CLOUD_USER}; otherwise the leaf port takes {@link LEAF_USER} with every right.
 */
export async function startHub(
  dir: string,
  edges?: readonly HubEdgeUser[],
): Promise<NatsProcess & { leafPort: number }> {
  const [port, leafPort] = [await freePort(), await freePort()];
  const leafAuth = edges
    ? ""
    : `, authorization { user: ${JSON.stringify(LEAF_USER.user)}, password: ${JSON.stringify(LEAF_USER.pass)} }`;
  const config = [
    "server_name: hub",
    `listen: "127.0.0.1:${port}"`,
    `jetstream { store_dir: ${JSON.stringify(join(dir, "hub-js"))}, domain: ${HUB_DOMAIN}, sync_interval: always }`,
    ...(edges
      ? [
          hubAuthorizationConfig(edges, [
            `{ user: ${JSON.stringify(CLOUD_USER.user)}, password: ${JSON.stringify(CLOUD_USER.pass)} }`,
          ]),
        ]
      : []),
    // no_advertise: the leaf must not learn the hub's own leaf URL and reconnect around the relay.
    `leafnodes { listen: "127.0.0.1:${leafPort}", no_advertise: true${leafAuth} }`,
    "",
  ].join("\n");
  const hub = await runNats(dir, "hub", config, port);
  return { ...hub, ...(edges ? { credentials: CLOUD_USER } : {}), leafPort };
}

/** A locked hub's edges: the tests' edge with {@link LEAF_USER}, and `others`. */
export interface HubLock {
  readonly others?: readonly HubEdgeUser[];
}

/** How the edge's leaf server is set up beyond its name and upstream. */
export interface LeafSetup {
  /** The edge's leaf credentials at the hub (default {@link LEAF_USER}). */
  readonly credentials?: { user: string; pass: string };
  /** Run Doppel's device auth callout at the leaf (see {@link edgeDeviceAuth}). */
  readonly deviceAuth?: LeafDeviceAuth;
}

/** The edge's server, a leaf of `upstream` (Doppel's leaf configuration). */
export async function startLeaf(
  dir: string,
  edge: string,
  upstream: string,
  setup: LeafSetup = {},
): Promise<NatsProcess> {
  const port = await freePort();
  const config = leafServerConfig({
    edge,
    host: "127.0.0.1",
    port,
    storeDir: join(dir, `${edge}-js`),
    upstream,
    credentials: setup.credentials ?? LEAF_USER,
    ...(setup.deviceAuth ? { deviceAuth: setup.deviceAuth } : {}),
  });
  return runNats(dir, edge, config, port);
}

/** Fresh secrets of an edge whose leaf server runs the device auth callout. */
export interface EdgeDeviceAuth {
  /** For `startLeaf` / `startEdgeServers`: the leaf server's accounts and callout. */
  readonly leaf: LeafDeviceAuth;
  /** The edge node's `nats` section (without `servers`): its user and `deviceAuth`. */
  readonly nats: Pick<NonNullable<NodeConfigInput["nats"]>, "credentials" | "deviceAuth">;
}

/**
 * A new issuer key and users for an edge's device auth; `credentialsFile` is the edge's device
 * credentials. The leaf's side is derived from the edge node's `nats` section as
 * `doppel edge leaf-config --config` derives it.
 */
export function edgeDeviceAuth(credentialsFile: string): EdgeDeviceAuth {
  const issuer = createAccount();
  const secret = () => randomBytes(12).toString("hex");
  const nats = {
    credentials: { user: "doppel-edge-node", pass: secret() },
    deviceAuth: {
      issuerSeed: new TextDecoder().decode(issuer.getSeed()),
      account: "DOPPEL",
      credentials: { user: "doppel-edge-auth", pass: secret() },
      system: { user: "doppel-edge-sys", pass: secret() },
      credentialsFile,
      revocationPoll: "50ms",
    },
  };
  const leaf = leafDeviceAuth(compileConfig({ nats: { servers: "nats://127.0.0.1:4222", ...nats } }));
  if (!leaf) throw new Error("no device auth in the edge's configuration");
  return { leaf, nats };
}

/**
 * The edge's server from a configuration written elsewhere (`doppel edge leaf-config`'s output),
 * its client port `port`, in `dir`.
 */
export function startLeafFromConfig(
  dir: string,
  edge: string,
  config: string,
  port: number,
): Promise<NatsProcess> {
  return runNats(dir, edge, config, port);
}

/**
 * A TCP relay in front of the hub's leaf port: `cut()` drops the link, `restore()` lets it
 * reconnect; `stall()` stops moving bytes while the connections stay open (a silent partition:
 * neither server sees a close), `unstall()` moves them again.
 */
export interface LinkRelay {
  readonly url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  stall(): void;
  unstall(): void;
  stop(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<LinkRelay> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  const pairs = new Set<readonly [Socket, Socket]>();
  let stalled = false;
  const flow = ([client, upstream]: readonly [Socket, Socket]) => {
    client.pipe(upstream);
    upstream.pipe(client);
  };
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = tcpConnect(targetPort, "127.0.0.1");
        sockets.add(client);
        sockets.add(upstream);
        const pair = [client, upstream] as const;
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
          pairs.delete(pair);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        pairs.add(pair);
        if (!stalled) flow(pair);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
      server = s;
    });
  const cut = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (!s) return resolve();
      s.close(() => resolve());
    });
  const stall = () => {
    stalled = true;
    for (const [client, upstream] of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  };
  const unstall = () => {
    stalled = false;
    for (const pair of pairs) flow(pair);
  };
  await listen();
  return { url: `nats://127.0.0.1:${port}`, cut, restore: listen, stall, unstall, stop: cut };
}

/** The servers every edge test runs on: a hub, a relay the test can cut, and the edge's leaf. */
export interface EdgeServers {
  /** A fresh directory for the servers' JetStream stores and the test's own files. */
  readonly dir: string;
  readonly hub: NatsProcess & { leafPort: number };
  readonly relay: LinkRelay;
  readonly leaf: NatsProcess;
}

/**
 * Starts the hub, the relay in front of its leaf port and the leaf of `edge`, in a new directory
 * (`dir`, or a fresh one).
 */
export async function startEdgeServers(
  name: string,
  edge: string,
  setup: LeafSetup & { readonly dir?: string; readonly lockHub?: HubLock | undefined } = {},
): Promise<EdgeServers> {
  const dir = setup.dir ?? mkdtempSync(join(tmpdir(), `doppel-edge-${name}-`));
  const credentials = setup.credentials ?? LEAF_USER;
  const hub = await startHub(
    dir,
    setup.lockHub && [
      { edge, user: credentials.user, password: credentials.pass },
      ...(setup.lockHub.others ?? []),
    ],
  );
  const relay = await startRelay(hub.leafPort);
  const leaf = await startLeaf(dir, edge, relay.url, setup);
  return { dir, hub, relay, leaf };
}

/** Stops what {@link startEdgeServers} started (as much of it as did start) and removes its directory. */
export async function stopEdgeServers(servers: Partial<EdgeServers>): Promise<void> {
  await servers.leaf?.stop();
  await servers.relay?.stop();
  await servers.hub?.stop();
  if (servers.dir !== undefined) rmSync(servers.dir, { recursive: true, force: true });
}

/** The cloud node of the edge tests: memory store, no gRPC listener, 4 shards, on the hub. */
export function cloudNodeConfig(
  nodeId: string,
  hub: NatsProcess,
  nats: Omit<NonNullable<NodeConfigInput["nats"]>, "servers"> = {},
): NodeConfigInput {
  return {
    nodeId,
    store: { kind: "memory" },
    grpc: { listen: false },
    shards: 4,
    log: { level: "silent" },
    nats: { ...hubConnection(hub), ...nats },
  };
}

/** What an edge node of the edge tests sets beyond {@link edgeNodeConfig}'s block; `nats` without `servers`. */
export type EdgeNodeExtras = Omit<NodeConfigInput, "nodeId" | "nats" | "edge"> & {
  readonly nats?: Omit<NonNullable<NodeConfigInput["nats"]>, "servers">;
};

/**
 * An edge node of the edge tests: memory store, no gRPC listener, silent log, on the edge's leaf
 * server, with the `edge` section given; `extras` adds to it or replaces it (e.g. `store`, `shards`).
 */
export function edgeNodeConfig(
  nodeId: string,
  leaf: NatsProcess,
  edge: NonNullable<NodeConfigInput["edge"]>,
  { nats = {}, ...extras }: EdgeNodeExtras = {},
): NodeConfigInput {
  return {
    nodeId,
    store: { kind: "memory" },
    grpc: { listen: false },
    log: { level: "silent" },
    ...extras,
    nats: { servers: leaf.url, ...nats },
    edge,
  };
}

/**
 * The source registrar a cloud node runs (edges ask it to source their streams), on `nc`, a
 * connection to the hub: for the tests that run the cloud's replication without a cloud node.
 */
export async function startSourceRegistrar(nc: NatsConnection): Promise<SourceRegistrar> {
  const registrar = new SourceRegistrar(nc, { ingressStream: "DOPPEL_INGRESS", logger: silentLogger() });
  await registrar.start();
  return registrar;
}

/** What the link helpers watch: an edge node's view of its leaf link. */
interface LinkWatcher {
  readonly status: { readonly linkUp: boolean };
}

/** Waits until `edge` sees its leaf link up. */
export async function linkUp(edge: LinkWatcher, what = "the edge reaches the cloud", timeoutMs = 60_000) {
  await eventually(() => (edge.status.linkUp ? true : undefined), what, timeoutMs);
}

/** Cuts the leaf link at the relay and waits until `edge` sees it down. */
export async function cutLink(relay: LinkRelay, edge: LinkWatcher): Promise<void> {
  await relay.cut();
  await eventually(() => (edge.status.linkUp ? undefined : true), "the edge sees the link down", 60_000);
}

/** Restores the leaf link at the relay and waits until `edge` sees it up again. */
export async function restoreLink(relay: LinkRelay, edge: LinkWatcher): Promise<void> {
  await relay.restore();
  await linkUp(edge, "the link is back", 90_000);
}
