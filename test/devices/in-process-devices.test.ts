import { InvalidArgument } from "doppel";
import { type DesiredPush, DeviceClient } from "doppel/device";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Thermostat } from "../../twins/thermostat.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

describe("devices over the in-process transport", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Thermostat] });
  });
  afterEach(async () => {
    await test.stop();
  });

  const device = (id: string) =>
    new DeviceClient({ transport: test.node.bus.connect(), type: "thermostat", id });

  it("applies a device report once it is acknowledged", async () => {
    const ack = await device("t1").report({ temperature: 18, heating: false });
    expect(ack.version).toBeGreaterThan(0);
    const view = await test.twins.get({ type: "thermostat", id: "t1" });
    expect(view.reported).toEqual({ temperature: 18, heating: false });
    expect(view.version).toBe(ack.version);
  });

  it("applies a re-sent report with the same message id once", async () => {
    const d = device("t1");
    const first = await d.report({ temperature: 19 }, { messageId: "m-1" });
    const again = await d.report({ temperature: 19 }, { messageId: "m-1" });
    expect(again.duplicate).toBe(true);
    expect(again.version).toBe(first.version);
    const events = await test.twins.history({ type: "thermostat", id: "t1" }, { limit: 100 });
    expect(events.filter((e) => e.type === "$reported")).toHaveLength(1);
  });

  it("pushes desired state to an online device and hands it to a syncing one", async () => {
    const d = device("t1");
    await d.report({ temperature: 25, heating: false });
    const pushed = new Promise<DesiredPush>((resolve) => d.onDesired(resolve));
    await test.twins.invoke({ type: "thermostat", id: "t1" }, "boost", { minutes: 10 });
    const push = await pushed;
    expect(push.desired).toEqual({ heating: true });
    expect(push.delta).toEqual({ heating: true });
    // A device that was offline gets the same on sync.
    const late = await device("t1").sync();
    expect(late.desired).toEqual({ heating: true });
    expect(late.version).toBe(push.version);
  });

  it("answers sync of a twin without events with an empty shadow", async () => {
    expect(await device("new").sync()).toEqual({ version: 0, reported: {}, desired: {}, delta: {} });
  });

  it("rejects a malformed report with a precise error and keeps serving", async () => {
    const d = device("t1");
    await expect(d.report({ temperature: "hot" })).rejects.toThrow(InvalidArgument);
    const transport = test.node.bus.connect();
    const reply = await transport.request("doppel.dev.thermostat.t1.reported", bytes("{not json"), {
      timeoutMs: 1000,
    });
    expect(new TextDecoder().decode(reply.data)).toContain("reported patch is not valid JSON");
    await expect(d.report({ temperature: 20 })).resolves.toMatchObject({ duplicate: false });
    expect(test.node.ingress.stats.rejected).toBe(2);
  });

  it("tells a device about bad input on its errors subject when it asked for no reply", async () => {
    const transport = test.node.bus.connect();
    const error = new Promise<string>((resolve) =>
      transport.subscribe("doppel.dev.thermostat.t9.errors", (m) =>
        resolve(new TextDecoder().decode(m.data)),
      ),
    );
    transport.publish("doppel.dev.thermostat.t9.reported", bytes("[1,2]"));
    expect(JSON.parse(await error)).toMatchObject({
      code: "INVALID_ARGUMENT",
      message: "reported patch must be a JSON object, got an array",
    });
  });

  it("counts and drops messages on subjects that name no valid twin", async () => {
    const transport = test.node.bus.connect();
    for (const subject of [
      "doppel.dev.thermostat.reported",
      "doppel.dev.toaster.t1.reported",
      "doppel.dev.thermostat.a.b.reported",
    ]) {
      transport.publish(subject, bytes("{}"));
    }
    const reply = await transport.request("doppel.dev.toaster.t1.reported", bytes("{}"), { timeoutMs: 1000 });
    expect(new TextDecoder().decode(reply.data)).toContain("unknown twin type 'toaster'");
    await test.idle();
    expect(test.node.ingress.stats.rejected).toBeGreaterThanOrEqual(4);
    expect((await device("t1").report({ temperature: 21 })).duplicate).toBe(false);
  });

  it("records telemetry apart from state events", async () => {
    const d = device("t1");
    await d.telemetry({ temperature: 21.5 }, 1_000);
    await d.telemetry({ temperature: 22.5 }, 2_000);
    const samples = await test.twins.telemetry({ type: "thermostat", id: "t1" }, { since: 0, until: 10_000 });
    expect(samples.map((s) => s.metrics["temperature"])).toEqual([21.5, 22.5]);
    await expect(test.twins.get({ type: "thermostat", id: "t1" })).rejects.toThrow("not found");
  });
});
