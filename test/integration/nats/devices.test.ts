import { DeadlineExceeded, InvalidArgument, NotFound, Unavailable } from "doppel";
import { type DesiredPush, DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsTransport } from "../../../cluster/transport/nats.ts";
import { encodeProtobuf, PROTOBUF_TYPE } from "../../../runtime/devices/payload-codec.ts";
import {
  deviceTransport,
  eventually,
  type NatsNode,
  resetStream,
  startNatsNode,
  streamMessages,
} from "./harness.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

describe("devices over NATS and JetStream", () => {
  let n: NatsNode;
  let wire: NatsTransport;
  const devices: DeviceClient[] = [];

  beforeAll(async () => {
    await resetStream();
    n = await startNatsNode();
    wire = await deviceTransport();
  });
  afterAll(async () => {
    for (const d of devices) await d.close();
    await wire?.close();
    await n?.stop();
    await resetStream(); // leave the test server as we found it
  });

  const device = (type: string, id: string) => {
    const d = new DeviceClient({ transport: wire, type, id });
    devices.push(d);
    return d;
  };
  /** Resolves with the twin's view once a persisted change reaches `version` or more. */
  const persisted = (id: string, version: number, type = "thermostat") =>
    eventually(async () => {
      const view = await n.client.getTwin({ type, id });
      return view.version >= version ? view : undefined;
    }, `${type}/${id} at version ${version}`);

  it("applies a device's report: state and version change, GetTwin shows it, telemetry lands in history", async () => {
    const d = device("thermostat", "r1");
    const ack = await d.report({ temperature: 17.5, heating: false });
    expect(ack.duplicate).toBe(false);
    const view = await persisted("r1", 1);
    expect(view.reported).toEqual({ temperature: 17.5, heating: false });
    // 17.5 °C is below the set point: the twin decided to heat and asked the device to.
    expect(view.state["heatingDemand"]).toBe(true);
    expect(view.desired).toEqual({ heating: true });

    await d.telemetry({ temperature: 17.6 }, 1_000);
    await d.telemetry({ temperature: 17.7 }, 2_000);
    const samples = await eventually(async () => {
      const got = [];
      for await (const s of n.client.telemetry({ type: "thermostat", id: "r1" }, { since: 0, until: 10_000 }))
        got.push(s);
      return got.length === 2 ? got : undefined;
    }, "two telemetry samples");
    expect(samples.map((s) => s.metrics["temperature"])).toEqual([17.6, 17.7]);
    // Everything acknowledged to JetStream is gone from the work queue.
    await eventually(async () => ((await streamMessages()) === 0 ? true : undefined), "an empty stream");
  });

  it("accepts protobuf reports and telemetry from constrained devices", async () => {
    const headers = new Map([["Content-Type", PROTOBUF_TYPE]]);
    await wire.publishDurable(
      "doppel.dev.thermostat.pb1.reported",
      encodeProtobuf("Reported", { temperature: 22 }),
      {
        messageId: "pb1-1",
        timeoutMs: 5000,
        headers,
      },
    );
    await wire.publishDurable(
      "doppel.dev.thermostat.pb1.telemetry",
      encodeProtobuf("Telemetry", { samples: [{ at: 5_000, metrics: { temperature: 22.1 } }] }),
      { messageId: "pb1-2", timeoutMs: 5000, headers },
    );
    expect((await persisted("pb1", 1)).reported).toEqual({ temperature: 22 });
    const protobufDevice = new DeviceClient({
      transport: wire,
      type: "thermostat",
      id: "pb1",
      encoding: "protobuf",
    });
    devices.push(protobufDevice);
    const state = await protobufDevice.sync();
    expect(state.reported).toEqual({ temperature: 22 });
    expect(state.version).toBeGreaterThan(0);
  });

  it("pushes desired state set over gRPC to an online device, and hands it to an offline one on sync", async () => {
    const online = device("thermostat", "d1");
    await online.report({ temperature: 25, heating: false });
    await persisted("d1", 1);
    const pushed = new Promise<DesiredPush>((resolve) => online.onDesired(resolve));
    await wire.connection.flush(); // the subscription is in place at the server
    const after = await n.client.updateDesired({ type: "thermostat", id: "d1" }, { heating: true });
    const push = await pushed;
    expect(push).toEqual({ version: after.version, desired: { heating: true }, delta: { heating: true } });

    // Offline while desired changes: it learns the current desired state and version on sync.
    await n.client.updateDesired({ type: "thermostat", id: "d2" }, { heating: true });
    const late = device("thermostat", "d2");
    const synced = await late.sync();
    expect(synced.desired).toEqual({ heating: true });
    expect(synced.version).toBe((await n.client.getTwin({ type: "thermostat", id: "d2" })).version);
  });

  it("returns an online device's answer to a command, and a clear error when it is offline or silent", async () => {
    const pump = device("pump", "p1");
    pump.onCommand((command, args) => ({ command, blinking: true, seconds: args["seconds"] ?? null }));
    await wire.connection.flush(); // the subscription is in place at the server
    const { result } = await n.client.invoke({ type: "pump", id: "p1" }, "identify", { seconds: 3 });
    expect(result).toEqual({ command: "identify", blinking: true, seconds: 3 });
    expect(n.node.devices.commands.answered).toBe(1);

    // No device listens: UNAVAILABLE at once, naming the device.
    const offline = n.client.invoke({ type: "pump", id: "p-offline" }, "identify", {});
    await expect(offline).rejects.toThrow(Unavailable);
    await expect(offline).rejects.toThrow("device pump/p-offline is offline");

    // A device that is subscribed but never answers: DEADLINE_EXCEEDED after the command's timeout.
    const silent = wire.subscribe("doppel.dev.pump.p-silent.cmd", () => {});
    await wire.connection.flush();
    try {
      const started = Date.now();
      await expect(n.client.invoke({ type: "pump", id: "p-silent" }, "identify", {})).rejects.toThrow(
        DeadlineExceeded,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_500);
    } finally {
      silent.unsubscribe();
    }
    // The device's own error reaches the caller with its code.
    const failing = device("pump", "p-fail");
    failing.onCommand(() => {
      throw new InvalidArgument("cannot blink while running");
    });
    await wire.connection.flush();
    await expect(n.client.invoke({ type: "pump", id: "p-fail" }, "identify", {})).rejects.toThrow(
      "cannot blink while running",
    );
  }, 20_000);

  it("applies duplicate reports (same message id) once", async () => {
    const d = device("thermostat", "dup1");
    const first = await d.report({ temperature: 19 }, { messageId: "dup-1" });
    const again = await d.report({ temperature: 19 }, { messageId: "dup-1" });
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true); // the stream's duplicate window
    // Past the stream's window, the twin itself drops it: publish straight to the stream under another stream id.
    await persisted("dup1", 1);
    const events = await n.node.twins.history({ type: "thermostat", id: "dup1" }, { limit: 100 });
    expect(events.filter((e) => e.type === "$reported")).toHaveLength(1);
  });

  it("applies a stamped report once whatever its message id, and never after a later one", async () => {
    const d = device("thermostat", "seq1");
    const ref = { type: "thermostat", id: "seq1" };
    const staleBefore = n.node.ingress.stats.stale;
    const seq = d.nextSeq()!;
    await d.report({ temperature: 20 }, { seq, messageId: "seq1-a" });
    // A re-send under another message id: the stream stores it again, the twin drops it by its seq.
    await d.report({ temperature: 20 }, { seq, messageId: "seq1-b" });
    // A later report, then an older one that arrives after it (a delayed re-send).
    await d.report({ temperature: 22 }, { seq: seq + 2 });
    await d.report({ temperature: 21 }, { seq: seq + 1 });
    await eventually(
      () => (n.node.ingress.stats.stale >= staleBefore + 2 ? true : undefined),
      "both stale reports dropped",
    );
    const events = await n.node.twins.history(ref, { limit: 100 });
    expect(events.filter((e) => e.type === "$reported").map((e) => e.data["patch"])).toEqual([
      { temperature: 20 },
      { temperature: 22 },
    ]);
    const view = await n.client.getTwin(ref);
    expect(view.reported).toEqual({ temperature: 22 });
    expect(Object.keys(view.reportedAt ?? {})).toEqual(["temperature"]);
  });

  it("rejects malformed payloads, invalid ids and oversized messages: counted, reported, node keeps serving", async () => {
    const stats = n.node.ingress.stats;
    const before = stats.rejected;
    const errors: string[] = [];
    const sub = wire.subscribe("doppel.dev.thermostat.bad1.errors", (m) => errors.push(text(m.data)));
    try {
      const send = (subject: string, data: Uint8Array, messageId: string) =>
        wire.publishDurable(subject, data, { messageId, timeoutMs: 5000 });
      await send("doppel.dev.thermostat.bad1.reported", bytes("{not json"), "bad-1");
      await send("doppel.dev.thermostat.bad1.reported", bytes('{"temperature":"hot"}'), "bad-2");
      await send("doppel.dev.thermostat.bad1.telemetry", bytes('{"metrics":{"t":"x"}}'), "bad-3");
      await send(
        "doppel.dev.thermostat.bad1.reported",
        new Uint8Array([0x0a, 0xff, 0xff, 0xff]),
        "bad-4",
      ).catch(() => undefined);
      await wire.publishDurable("doppel.dev.thermostat.bad1.reported", new Uint8Array([0x0a, 0x05, 0xff]), {
        messageId: "bad-5",
        timeoutMs: 5000,
        headers: new Map([["Content-Type", PROTOBUF_TYPE]]),
      });
      // Invalid ids in subjects (still one NATS token each) and an unknown type.
      await send("doppel.dev.thermostat.bad!id.reported", bytes("{}"), "bad-6");
      await send("doppel.dev.toaster.t1.reported", bytes("{}"), "bad-7");
      // Larger than the node's 64 KiB payload limit, smaller than the stream's 1 MiB.
      await send(
        "doppel.dev.thermostat.bad1.reported",
        bytes(JSON.stringify({ firmware: "x".repeat(100_000) })),
        "bad-8",
      );
      await eventually(() => (stats.rejected - before >= 8 ? true : undefined), "eight rejections");
      await eventually(() => (errors.length >= 6 ? true : undefined), "errors on the twin's errors subject");
      const codes = errors.map((e) => JSON.parse(e) as { code: string; message: string; subject: string });
      expect(codes.every((e) => e.code === "INVALID_ARGUMENT")).toBe(true);
      expect(codes.map((e) => e.message).join("\n")).toContain("reported patch is not valid JSON");
      expect(codes.map((e) => e.message).join("\n")).toContain("bytes; the limit is 65536");
      expect(codes[0]?.subject).toBe("doppel.dev.thermostat.bad1.reported");
    } finally {
      sub.unsubscribe();
    }
    // Larger than the stream allows: the server refuses the publish itself.
    const huge = bytes(JSON.stringify({ firmware: "x".repeat(1_100_000) }));
    await expect(
      wire.publishDurable("doppel.dev.thermostat.bad1.reported", huge, {
        messageId: "bad-9",
        timeoutMs: 5000,
      }),
    ).rejects.toThrow();
    // Core NATS: malformed subjects are counted too.
    const rejected = stats.rejected;
    wire.publish("doppel.dev.thermostat.reported", bytes("{}"));
    wire.publish("doppel.dev.thermostat.a.b.reported", bytes("{}"));
    await eventually(() => (stats.rejected >= rejected + 2 ? true : undefined), "malformed subjects counted");
    // Nothing was applied, nothing is left in the stream, and the node keeps serving.
    await expect(n.client.getTwin({ type: "thermostat", id: "bad1" })).rejects.toThrow(NotFound);
    await eventually(async () => ((await streamMessages()) === 0 ? true : undefined), "an empty stream");
    const ok = device("thermostat", "bad1");
    await ok.report({ temperature: 20 });
    expect((await persisted("bad1", 1)).reported).toEqual({ temperature: 20 });
  }, 30_000);

  it("tells a device through onError when the node refused its input", async () => {
    const d = device("thermostat", "e1");
    const refused = new Promise<string>((resolve) =>
      d.onError((error) => resolve(`${error.code}: ${error.message}`)),
    );
    await d.report({ temperature: "hot" } as never);
    expect(await refused).toMatch(/^INVALID_ARGUMENT: .*temperature/);
    expect(d.stats.refused).toBe(1);
  });
});
