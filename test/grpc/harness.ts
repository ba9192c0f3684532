/**
 * Test harness for the gateway: a whole in-memory node (`TestNode`) with the gateway on a free
 * loopback port, a `DoppelClient` and a raw grpc-js client of it. Everything stops together.
 */
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { TwinClass } from "doppel";
import type { NodeConfigInput, TwinApi } from "doppel/node";
import { TestNode } from "doppel/testing";
import { DoppelClient, type DoppelClientOptions } from "../../runtime/grpc/client.ts";
import type { TwinServiceClient } from "../../runtime/grpc/generated/doppel/v1/TwinService.ts";
import { loadContract } from "../../runtime/grpc/proto.ts";
import { type Gateway, type GatewayOptions, startGateway } from "../../runtime/grpc/server.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { Thermostat } from "../../twins/thermostat.ts";

export interface Harness {
  readonly test: TestNode;
  readonly gateway: Gateway;
  readonly client: DoppelClient;
  /** A raw grpc-js client, to see statuses and trailers as they are on the wire. */
  readonly raw: TwinServiceClient;
  /** Another `DoppelClient` on the same gateway (clients are independent connections). */
  newClient(options?: DoppelClientOptions): DoppelClient;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  readonly twins?: readonly TwinClass[];
  readonly config?: NodeConfigInput;
  readonly gateway?: Partial<Omit<GatewayOptions, "api" | "types" | "logger">>;
  readonly client?: DoppelClientOptions;
  /** Wraps the node's API before the gateway gets it (to observe or slow down calls). */
  readonly wrapApi?: (api: TwinApi) => TwinApi;
}

/** Starts a node with the Thermostat twin (and `twins`), its gateway, and clients. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const test = await TestNode.start({
    twins: [Thermostat, ...(options.twins ?? [])],
    ...(options.config ? { config: options.config } : {}),
  });
  const gateway = await startGateway({
    api: options.wrapApi ? options.wrapApi(test.twins) : test.twins,
    types: () => test.node.registry.list().map((t) => ({ name: t.name, commands: t.commandNames })),
    listen: "127.0.0.1:0",
    maxMessageBytes: 4 * 1024 * 1024,
    logger: silentLogger(),
    clock: test.clock,
    shutdownGraceMs: 2000,
    ...options.gateway,
  });
  test.node.attach(gateway);
  const clients: DoppelClient[] = [];
  const newClient = (clientOptions?: DoppelClientOptions) => {
    const client = new DoppelClient(gateway.address, clientOptions);
    clients.push(client);
    return client;
  };
  const client = newClient(options.client);
  const raw = new (loadContract().Client)(gateway.address, grpc.credentials.createInsecure());
  return {
    test,
    gateway,
    client,
    raw,
    newClient,
    async stop() {
      for (const c of clients) c.close();
      raw.close();
      await test.stop();
    },
  };
}

/** A raw unary call as a promise of `{ error, response }`, never rejecting. */
export function rawUnary<Res>(
  start: (callback: grpc.requestCallback<Res>) => unknown,
): Promise<{ error: grpc.ServiceError | null; response: Res | undefined }> {
  return new Promise((resolve) => {
    start((error, response) => resolve({ error, response }));
  });
}

/** A promise with its resolve function, to sequence tests without sleeping. */
export function barrier<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** `api` with some methods replaced; the others still run on `api` itself. */
export function overrideApi(api: TwinApi, overrides: Partial<TwinApi>): TwinApi {
  return new Proxy(api, {
    get(target, property, receiver) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof TwinApi];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Wraps `api.watch` so a test can await each unsubscribe (the server dropping a watcher). */
export function observeUnsubscribes(): {
  wrap: (api: TwinApi) => TwinApi;
  next: () => Promise<void>;
  readonly count: number;
} {
  let count = 0;
  let waiting = barrier();
  return {
    wrap: (api) =>
      overrideApi(api, {
        watch: (ref, listener) => {
          const unsubscribe = api.watch(ref, listener);
          return () => {
            unsubscribe();
            count++;
            waiting.resolve();
            waiting = barrier();
          };
        },
      }),
    next: () => waiting.promise,
    get count() {
      return count;
    },
  };
}

/**
 * A TCP proxy in front of `target` that can stop reading what the server sends, like a client on a
 * congested network: the server's socket buffers fill and its writes start to push back. (A
 * grpc-js client that merely stops reading does not do this: Node's HTTP/2 keeps accepting data.)
 */
export async function startStallableProxy(target: string): Promise<{
  readonly address: string;
  stall(): void;
  unstall(): void;
  close(): Promise<void>;
}> {
  const colon = target.lastIndexOf(":");
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  const upstreams = new Set<net.Socket>();
  const sockets = new Set<net.Socket>();
  let stalled = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    upstreams.add(upstream);
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.on("data", (chunk: Buffer) => {
      if (!client.write(chunk)) {
        upstream.pause();
        client.once("drain", () => {
          if (!stalled) upstream.resume();
        });
      }
    });
    if (stalled) upstream.pause();
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: proxyPort } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${proxyPort}`,
    stall() {
      stalled = true;
      for (const upstream of upstreams) upstream.pause();
    },
    unstall() {
      stalled = false;
      for (const upstream of upstreams) upstream.resume();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
