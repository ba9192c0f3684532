import { ResourceExhausted, Unavailable } from "doppel";
import { DeviceClient } from "doppel/device";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { InProcessBus, InProcessTransport } from "../../cluster/transport/in-process.ts";
import type { ConnectionState, DurableAck, Transport } from "../../cluster/transport/transport.ts";
import { Pump } from "../../twins/pump.ts";
import { Thermostat } from "../../twins/thermostat.ts";

/** An in-process transport that can be "disconnected" like a NATS connection. */
class FlakyTransport implements Transport {
  connected = true;
  readonly listeners = new Set<(state: ConnectionState) => void>();
  readonly sent: string[] = [];
  constructor(private readonly inner: InProcessTransport) {}
  set(state: ConnectionState): void {
    this.connected = state === "connected";
    for (const l of this.listeners) l(state);
  }
  onConnectionChange(listener: (state: ConnectionState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  publish: Transport["publish"] = (...args) => this.inner.publish(...args);
  subscribe: Transport["subscribe"] = (...args) => this.inner.subscribe(...args);
  request: Transport["request"] = (...args) => this.inner.request(...args);
  respond: Transport["respond"] = (...args) => this.inner.respond(...args);
  publishDurable(
    subject: string,
    data: Uint8Array,
    options: { messageId?: string; timeoutMs: number },
  ): Promise<DurableAck> {
    this.sent.push(options.messageId ?? "");
    return this.inner.publishDurable(subject, data, options);
  }
  close = () => this.inner.close();
}

describe("DeviceClient", () => {
  let test: TestNode;
  let bus: InProcessBus;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Thermostat, Pump] });
    bus = test.node.bus;
  });
  afterEach(async () => {
    await test.stop();
  });

  it("buffers while disconnected and sends in order, with the same message ids, after the re-sync", async () => {
    const transport = new FlakyTransport(bus.connect());
    const device = new DeviceClient({ transport, type: "thermostat", id: "b1" });
    const states: string[] = [];
    device.onConnection((s) => states.push(s));
    transport.set("disconnected");
    const sends = [18, 19, 20].map((temperature) => device.report({ temperature }));
    expect(device.stats.buffered).toBe(3);
    expect(transport.sent).toEqual([]);
    const reconnected = new Promise<void>((resolve) =>
      device.onConnection((s) => s === "connected" && resolve()),
    );
    transport.set("connected");
    await reconnected;
    await Promise.all(sends);
    expect(states).toEqual(["disconnected", "connected"]);
    expect(device.stats).toMatchObject({ buffered: 0, resyncs: 1, sent: 3, acked: 3 });
    const events = await test.twins.history({ type: "thermostat", id: "b1" }, { limit: 100 });
    const reported = events.filter((e) => e.type === "$reported");
    expect(reported.map((e) => (e.data["patch"] as { temperature: number }).temperature)).toEqual([
      18, 19, 20,
    ]);
    expect(reported.map((e) => e.causation)).toEqual(transport.sent);
    await device.close();
  });

  it("drops the oldest buffered message when full (drop-oldest)", async () => {
    const transport = new FlakyTransport(bus.connect());
    const device = new DeviceClient({
      transport,
      type: "thermostat",
      id: "b2",
      offlineBuffer: { maxMessages: 2, whenFull: "drop-oldest" },
    });
    transport.set("disconnected");
    const first = device.report({ temperature: 1 });
    device.report({ temperature: 2 }).catch(() => {});
    device.report({ temperature: 3 }).catch(() => {});
    await expect(first).rejects.toThrow(ResourceExhausted);
    await expect(first).rejects.toThrow("the oldest message was dropped");
    expect(device.stats).toMatchObject({ buffered: 2, dropped: 1 });
    await device.close();
  });

  it("refuses the new message when full (reject-new), and refuses the buffer on close", async () => {
    const transport = new FlakyTransport(bus.connect());
    const device = new DeviceClient({
      transport,
      type: "thermostat",
      id: "b3",
      offlineBuffer: { maxMessages: 1, whenFull: "reject-new" },
    });
    transport.set("disconnected");
    const kept = device.report({ temperature: 1 });
    await expect(device.telemetry({ t: 1 })).rejects.toThrow("refused");
    expect(device.stats.dropped).toBe(1);
    await device.close();
    await expect(kept).rejects.toThrow(Unavailable);
  });
});

describe("Twin.sendToDevice (in-process)", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Pump] });
  });
  afterEach(async () => {
    await test.stop();
  });

  it("returns the device's answer to the command's caller", async () => {
    const device = new DeviceClient({ transport: test.node.bus.connect(), type: "pump", id: "p1" });
    device.onCommand((command, args) => ({ command, seconds: args["seconds"] ?? null }));
    const { result } = await test.twins.invoke({ type: "pump", id: "p1" }, "identify", { seconds: 2 });
    expect(result).toEqual({ command: "identify", seconds: 2 });
    expect(test.node.devices.commands).toMatchObject({ sent: 1, answered: 1 });
    await device.close();
  });

  /**
   * A device that cannot reply to requests (as an MQTT device): it answers each command by
   * publishing `answer(command)` on `publishOn(id)`, naming the command's id.
   */
  function deviceWithoutReplies(
    id: string,
    answer: (command: { command: string; args: Record<string, unknown>; id: string }) => object,
    publishOn: (id: string) => string = (own) => `doppel.dev.pump.${own}.cmd-result`,
  ) {
    const transport = test.node.bus.connect();
    const seen: string[] = [];
    transport.subscribe(`doppel.dev.pump.${id}.cmd`, (message) => {
      const command = JSON.parse(new TextDecoder().decode(message.data));
      seen.push(command.command);
      transport.publish(publishOn(id), new TextEncoder().encode(JSON.stringify(answer(command))));
    });
    return seen;
  }

  it("takes the answer of a device that cannot reply from its cmd-result subject, matched by the command's id", async () => {
    const seen = deviceWithoutReplies("m1", (c) => ({ id: c.id, result: { blinked: c.args["seconds"] } }));
    const { result } = await test.twins.invoke({ type: "pump", id: "m1" }, "identify", { seconds: 3 });
    expect(result).toEqual({ blinked: 3 });
    expect(seen).toEqual(["identify"]);
    expect(test.node.devices.commands).toMatchObject({ sent: 1, answered: 1 });
  });

  it("passes on a device's error answer from cmd-result, and refuses an answer with neither result nor error", async () => {
    deviceWithoutReplies("m2", (c) => ({
      id: c.id,
      error: { code: "FAILED_PRECONDITION", message: "lamp broken" },
    }));
    await expect(test.twins.invoke({ type: "pump", id: "m2" }, "identify", {})).rejects.toMatchObject({
      code: "FAILED_PRECONDITION",
      message: "device pump/m2: lamp broken",
    });
    deviceWithoutReplies("m3", (c) => ({ id: c.id, oops: true }));
    await expect(test.twins.invoke({ type: "pump", id: "m3" }, "identify", {})).rejects.toThrow(
      "device pump/m3 answered a command on doppel.dev.pump.m3.cmd-result with neither a result nor an error",
    );
  });

  it("ignores an answer published on another device's cmd-result subject", async () => {
    // m4 gets the command but its answer comes in as m5's: not the device the command went to.
    deviceWithoutReplies(
      "m4",
      (c) => ({ id: c.id, result: "spoofed" }),
      () => "doppel.dev.pump.m5.cmd-result",
    );
    const sent = test.twins.invoke({ type: "pump", id: "m4" }, "identify", {});
    await expect(sent).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect(test.node.devices.commands).toMatchObject({ sent: 1, answered: 0, timedOut: 1 });
  }, 10_000);

  it("fails with UNAVAILABLE naming the device when no device listens", async () => {
    await expect(test.twins.invoke({ type: "pump", id: "p2" }, "identify", {})).rejects.toThrow(
      "device pump/p2 is offline",
    );
    expect(test.node.devices.commands.offline).toBe(1);
  });
});
