/**
 * Queued device commands against a real nats-server (JetStream ingress): the pump example's
 * `calibrate` waits for an offline pump. One command is delivered once the pump connects and
 * reports (its answer reaches the twin's `onDeviceCommandResult`); another expires unsent and the
 * twin is told. History shows queued, delivered and expired.
 */
import type { RemoteEvent } from "doppel/client";
import { DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsTransport } from "../../../cluster/transport/nats.ts";
import { deviceTransport, eventually, type NatsNode, resetStream, startNatsNode } from "./harness.ts";

describe("queued device commands over NATS", () => {
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
    await resetStream();
  });

  async function history(id: string): Promise<RemoteEvent[]> {
    const events: RemoteEvent[] = [];
    for await (const event of n.client.history({ type: "pump", id })) events.push(event);
    return events;
  }

  const calibration = async (id: string) =>
    (await n.client.getTwin({ type: "pump", id })).state["calibration"] as Record<string, unknown> | null;

  it("delivers a command queued for an offline pump once it connects and reports; the twin gets the answer", async () => {
    const { result } = await n.client.invoke({ type: "pump", id: "q1" }, "calibrate", { offsetBar: 0.3 });
    expect(result).toMatchObject({ status: "queued" });
    const id = (result as { id: string }).id;
    expect(await calibration("q1")).toEqual({ offsetBar: 0.3, status: "pending", detail: id });

    const seen: { command: string; id: string }[] = [];
    const pump = new DeviceClient({ transport: wire, type: "pump", id: "q1" });
    devices.push(pump);
    pump.onCommand((command, args, context) => {
      seen.push({ command, id: context.id });
      return { applied: args["offsetBar"] ?? null };
    });
    await wire.connection.flush(); // the subscription is in place at the server
    await pump.report({ running: false, pressureBar: 2.1 });

    await eventually(
      async () => (await calibration("q1"))?.["status"] === "applied",
      "the calibration applied by the pump",
    );
    expect(seen).toEqual([{ command: "calibrate", id }]);
    const types = (await history("q1")).map((e) => e.type);
    expect(types).toEqual([
      "$command.queued",
      "calibrationQueued",
      "$reported",
      "$command.delivered",
      "calibrated",
    ]);
    const delivered = (await history("q1")).find((e) => e.type === "$command.delivered");
    expect(delivered?.data).toEqual({
      type: "$command.delivered",
      id,
      command: "calibrate",
      result: { applied: 0.3 },
    });
  });

  it("expires a command whose pump never comes back, and tells the twin (DEADLINE_EXCEEDED, expired)", async () => {
    const { result } = await n.client.invoke({ type: "pump", id: "q2" }, "calibrate", {
      offsetBar: -0.1,
      waitFor: "2s",
    });
    expect(result).toMatchObject({ status: "queued" });
    const failed = await eventually(async () => {
      const c = await calibration("q2");
      return c?.["status"] === "failed" ? c : undefined;
    }, "the calibration expired");
    expect(String(failed["detail"])).toMatch(/^pump\/q2: device command 'calibrate' \(.+\) expired at /);
    const types = (await history("q2")).map((e) => e.type);
    expect(types).toEqual(["$command.queued", "calibrationQueued", "$command.expired", "calibrationFailed"]);
    expect(n.node.engine.queuedCommands).toMatchObject({ queued: 2, delivered: 1, expired: 1 });
  });
});
