import * as net from "node:net";
import { ResourceExhausted } from "doppel";
import { type DesiredPush, DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, type NatsNode, natsUrl, resetStream, startNatsNode } from "./harness.ts";

/** A TCP proxy in front of the NATS server whose link the test can cut and restore. */
class LinkProxy {
  #server: net.Server | undefined;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  constructor(
    private readonly host: string,
    private readonly target: number,
  ) {}

  async up(): Promise<void> {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(this.target, this.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => this.#server!.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

describe("the device SDK over NATS", () => {
  let n: NatsNode;
  let proxy: LinkProxy;
  beforeAll(async () => {
    await resetStream();
    n = await startNatsNode();
    const url = new URL(natsUrl().replace(/^nats:/, "http:"));
    proxy = new LinkProxy(url.hostname, Number(url.port));
    await proxy.up();
  });
  afterAll(async () => {
    await proxy?.cut();
    await n?.stop();
    await resetStream();
  });

  const stateOf = (state: "connected" | "disconnected", device: DeviceClient) =>
    new Promise<void>((resolve) => {
      const off = device.onConnection((s) => {
        if (s === state) {
          off();
          resolve();
        }
      });
    });

  it("buffers reports while disconnected (dropping the oldest when full), then re-syncs and sends them in order", async () => {
    const device = await DeviceClient.connect({
      servers: `nats://127.0.0.1:${proxy.port}`,
      type: "thermostat",
      id: "off1",
      offlineBuffer: { maxMessages: 3, whenFull: "drop-oldest" },
    });
    try {
      const pushes: DesiredPush[] = [];
      device.onDesired((push) => pushes.push(push));
      await device.report({ temperature: 20 });

      const down = stateOf("disconnected", device);
      await proxy.cut();
      await down;
      expect(device.connected).toBe(false);
      const sends = [21, 22, 23, 24, 25].map((temperature) =>
        device.report({ temperature }).then(
          () => "ok",
          (error: unknown) => (error instanceof ResourceExhausted ? "dropped" : String(error)),
        ),
      );
      expect(device.stats).toMatchObject({ buffered: 3, dropped: 2 });
      // Desired state changes while the device is away: no push reaches it.
      const desired = await n.client.updateDesired({ type: "thermostat", id: "off1" }, { heating: true });

      const up = stateOf("connected", device);
      await proxy.up();
      await up;
      expect(await Promise.all(sends)).toEqual(["dropped", "dropped", "ok", "ok", "ok"]);
      // The re-sync after the reconnect handed it the current desired state.
      expect(device.stats.resyncs).toBe(1);
      // (Before the buffered reports went out; the twin's answers to those follow as live pushes.)
      expect(pushes).toContainEqual(
        expect.objectContaining({ version: desired.version, desired: { heating: true } }),
      );

      const events = await eventually(async () => {
        const all = await n.node.twins.history({ type: "thermostat", id: "off1" }, { limit: 100 });
        const reported = all.filter((e) => e.type === "$reported");
        return reported.length === 4 ? reported : undefined;
      }, "four reports persisted");
      expect(events.map((e) => (e.data["patch"] as { temperature: number }).temperature)).toEqual([
        20, 23, 24, 25,
      ]);
    } finally {
      await device.close();
    }
  }, 30_000);

  it("refuses new reports at once when the buffer is full and the policy is reject-new", async () => {
    const device = await DeviceClient.connect({
      servers: `nats://127.0.0.1:${proxy.port}`,
      type: "thermostat",
      id: "off2",
      offlineBuffer: { maxMessages: 1, whenFull: "reject-new" },
    });
    try {
      const down = stateOf("disconnected", device);
      await proxy.cut();
      await down;
      const kept = device.report({ temperature: 30 });
      await expect(device.report({ temperature: 31 })).rejects.toThrow(ResourceExhausted);
      expect(device.stats).toMatchObject({ buffered: 1, dropped: 1 });
      await proxy.up();
      await expect(kept).resolves.toMatchObject({ duplicate: false });
    } finally {
      await device.close();
    }
  }, 30_000);
});
