/**
 * Queued device commands (`sendToDevice(..., { queueFor })`) on a TestNode with a manual clock:
 * queued while the device is unreachable, kept across a restart, delivered in order and one at a
 * time when the device is next heard from (with the same id on a resend), expired when their time
 * runs out, bounded per twin, and handed to `onDeviceCommandResult` as turns recorded in history.
 */
import { type DeviceCommandResult, type JsonObject, Twin, z } from "doppel";
import { DeviceClient } from "doppel/device";
import { TestNode } from "doppel/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_JSON_LIMITS } from "../../runtime/core/json.ts";
import { DeviceCommands } from "../../runtime/devices/egress/device-commands.ts";
import { Pump } from "../../twins/pump.ts";
import { eventually } from "../support/eventually.ts";

interface Seen {
  readonly command: string;
  readonly args: JsonObject;
  readonly id: string;
}

/** A twin whose commands queue anything for its device, recording each outcome as an event. */
class Valve extends Twin<{ outcomes: string[] }, { type: "outcome"; what: string }> {
  static readonly type = "valve";
  static readonly commands = {
    send: z.object({
      name: z.string(),
      queueFor: z.string().default("1h"),
      timeout: z.string().default("5s"),
    }),
    direct: z.object({ name: z.string() }),
    failing: z.object({ name: z.string() }),
  };
  static handlerThrows = false;
  initialState() {
    return { outcomes: [] };
  }
  apply(state: { outcomes: string[] }, event: { type: "outcome"; what: string }) {
    return { outcomes: [...state.outcomes, event.what] };
  }
  async send({ name, queueFor, timeout }: { name: string; queueFor: string; timeout: string }) {
    const sent = await this.sendToDevice(
      name,
      { name },
      { timeout: timeout as "5s", queueFor: queueFor as "1h" },
    );
    return sent.status === "queued"
      ? { status: sent.status, id: sent.id, expiresAt: sent.expiresAt.getTime() }
      : sent;
  }
  async direct({ name }: { name: string }) {
    return await this.sendToDevice(name, {});
  }
  /** Queues, then throws: nothing of the turn is kept. */
  async failing({ name }: { name: string }) {
    await this.sendToDevice(name, {}, { queueFor: "1h" });
    throw new Error("changed my mind");
  }
  override onDeviceCommandResult(result: DeviceCommandResult) {
    if (Valve.handlerThrows) throw new Error("handler broke");
    const detail =
      result.outcome === "answered"
        ? JSON.stringify(result.result)
        : `${result.error?.code}:${String(result.error?.details?.["reason"] ?? "")}`;
    this.emit({ type: "outcome", what: `${result.command}:${result.outcome}:${detail}` });
  }
}

describe("queued device commands", () => {
  let test: TestNode;
  const devices: DeviceClient[] = [];

  async function start(config: object = {}) {
    test = await TestNode.start({ twins: [Valve, Pump], config });
    return test;
  }

  /** A device that answers each command with `answer` (or leaves it unanswered when that returns undefined). */
  function device(type: string, id: string, answer: (seen: Seen) => unknown = (c) => ({ ran: c.command })) {
    const seen: Seen[] = [];
    const client = new DeviceClient({ transport: test.node.bus.connect(), type, id });
    client.onCommand((command, args, { id: commandId }) => {
      const entry = { command, args, id: commandId };
      seen.push(entry);
      return answer(entry) as JsonObject;
    });
    devices.push(client);
    return { seen, client };
  }

  async function types(type: string, id: string): Promise<string[]> {
    const events = await test.twins.history({ type, id }, { limit: 1000 });
    return events.map((e) => e.type);
  }

  async function state(id: string): Promise<string[]> {
    return ((await test.twins.get({ type: "valve", id })).state as { outcomes: string[] }).outcomes;
  }

  afterEach(async () => {
    for (const d of devices.splice(0)) await d.close();
    Valve.handlerThrows = false;
    await test.stop();
  });

  it("queues a command for an offline device and delivers it, with its id, when the device next reports", async () => {
    await start();
    const queued = await test.twins.invoke({ type: "valve", id: "v1" }, "send", { name: "open" });
    expect(queued.result).toMatchObject({ status: "queued", expiresAt: test.clock.now() + 3_600_000 });
    const id = (queued.result as { id: string }).id;
    expect(await types("valve", "v1")).toEqual(["$command.queued"]);
    expect(test.node.devices.commands.offline).toBe(1);

    const { seen } = device("valve", "v1");
    await test.twins.report({ type: "valve", id: "v1" }, { open: false });
    await vi.waitFor(async () => expect(await state("v1")).toEqual(['open:answered:{"ran":"open"}']));
    expect(seen).toEqual([{ command: "open", args: { name: "open" }, id }]);
    expect(await types("valve", "v1")).toEqual([
      "$command.queued",
      "$reported",
      "$command.delivered",
      "outcome",
    ]);
    const delivered = (await test.twins.history({ type: "valve", id: "v1" }, { limit: 10 }))[2]!;
    expect(delivered.data).toEqual({
      type: "$command.delivered",
      id,
      command: "open",
      result: { ran: "open" },
    });
    expect(test.node.engine.queuedCommands).toMatchObject({ queued: 1, delivered: 1, expired: 0 });
  });

  it("answers at once when the device is online, and queues nothing", async () => {
    await start();
    device("valve", "v2");
    const { result } = await test.twins.invoke({ type: "valve", id: "v2" }, "send", { name: "open" });
    expect(result).toMatchObject({ status: "answered", result: { ran: "open" } });
    expect(await types("valve", "v2")).toEqual([]);
  });

  it("expires a command its device never comes back for, and tells the twin DEADLINE_EXCEEDED (expired)", async () => {
    await start();
    await test.twins.invoke({ type: "valve", id: "v3" }, "send", { name: "open", queueFor: "10m" });
    await test.twins.invoke({ type: "valve", id: "v3" }, "send", { name: "close", queueFor: "2h" });
    await test.advance("9m");
    expect(await state("v3")).toEqual([]);
    await test.advance("2m");
    await vi.waitFor(async () =>
      expect(await state("v3")).toEqual(["open:expired:DEADLINE_EXCEEDED:expired"]),
    );
    // The later one is still queued: delivered once its device reports.
    device("valve", "v3");
    await test.twins.report({ type: "valve", id: "v3" }, { x: 1 });
    await vi.waitFor(async () =>
      expect(await state("v3")).toEqual([
        "open:expired:DEADLINE_EXCEEDED:expired",
        'close:answered:{"ran":"close"}',
      ]),
    );
    expect(await types("valve", "v3")).toEqual([
      "$command.queued",
      "$command.queued",
      "$command.expired",
      "outcome",
      "$reported",
      "$command.delivered",
      "outcome",
    ]);
    expect(test.node.engine.queuedCommands).toMatchObject({ queued: 2, delivered: 1, expired: 1 });
  });

  it("expires a command while the twin is passivated: the reminder index wakes it", async () => {
    await start({ limits: { idleTimeout: "1m", idleSweep: "10s" } });
    await test.twins.invoke({ type: "valve", id: "v4" }, "send", { name: "open", queueFor: "30m" });
    await test.advance("5m");
    expect(test.node.engine.resident("valve/v4")).toBeUndefined();
    await test.advance("30m");
    await vi.waitFor(async () =>
      expect(await state("v4")).toEqual(["open:expired:DEADLINE_EXCEEDED:expired"]),
    );
  });

  it("refuses a command over the per-twin bound with RESOURCE_EXHAUSTED", async () => {
    await start({ limits: { maxQueuedDeviceCommands: 2 } });
    const ref = { type: "valve", id: "v5" };
    await test.twins.invoke(ref, "send", { name: "a" });
    await test.twins.invoke(ref, "send", { name: "b" });
    await expect(test.twins.invoke(ref, "send", { name: "c" })).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      message:
        "valve/v5: 2 device commands are queued for the device already (limits.maxQueuedDeviceCommands = 2); 'c' is not queued",
    });
    expect(await types("valve", "v5")).toEqual(["$command.queued", "$command.queued"]);
  });

  it("refuses a queueFor out of range and args too big to queue", async () => {
    await start({ limits: { maxPayloadBytes: 1024 * 1024 } });
    await expect(
      test.twins.invoke({ type: "valve", id: "v6" }, "send", { name: "a", queueFor: "31d" }),
    ).rejects.toThrow("queueFor must be more than 0 and at most 2592000000 ms (30 days), got 2678400000 ms");
    await expect(
      test.twins.invoke({ type: "valve", id: "v6" }, "send", { name: "x".repeat(70_000) }),
    ).rejects.toThrow("sendToDevice() args is 70011 bytes; the limit is 65536");
  });

  it("keeps nothing of a turn that queued and then threw", async () => {
    await start();
    await expect(test.twins.invoke({ type: "valve", id: "v7" }, "failing", { name: "a" })).rejects.toThrow(
      "changed my mind",
    );
    await expect(test.twins.get({ type: "valve", id: "v7" })).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("delivers in order, one command in flight at a time, and queues a new command behind the waiting ones", async () => {
    await start();
    const ref = { type: "valve", id: "v8" };
    for (const name of ["a", "b"]) await test.twins.invoke(ref, "send", { name });
    const gates: (() => void)[] = [];
    const { seen } = device(
      "valve",
      "v8",
      (c) => new Promise((resolve) => gates.push(() => resolve({ ran: c.command }))),
    );
    // The device is online now, but two commands wait: a third queues behind them.
    const third = await test.twins.invoke(ref, "send", { name: "c" });
    expect(third.result).toMatchObject({ status: "queued" });
    await test.twins.report(ref, { x: 1 });
    await vi.waitFor(() => expect(seen.map((s) => s.command)).toEqual(["a"]));
    gates.shift()!();
    await vi.waitFor(() => expect(seen.map((s) => s.command)).toEqual(["a", "b"]));
    gates.shift()!();
    await vi.waitFor(() => expect(seen.map((s) => s.command)).toEqual(["a", "b", "c"]));
    gates.shift()!();
    await vi.waitFor(async () =>
      expect(await state("v8")).toEqual([
        'a:answered:{"ran":"a"}',
        'b:answered:{"ran":"b"}',
        'c:answered:{"ran":"c"}',
      ]),
    );
    expect(seen.length).toBe(3);
  });

  it("resends a command whose answer did not come with the same id, on the retry schedule", async () => {
    await start();
    const ref = { type: "valve", id: "v9" };
    await test.twins.invoke(ref, "send", { name: "a", timeout: "100ms" });
    let calls = 0;
    const { seen } = device("valve", "v9", (c) =>
      ++calls === 1 ? new Promise(() => {}) : { ran: c.command },
    );
    await test.twins.report(ref, { x: 1 });
    // The first attempt is never answered (it times out); the retry goes after the backoff.
    await vi.waitFor(() => expect(test.node.engine.queuedCommands.retried).toBe(1));
    await test.advance("1s");
    await vi.waitFor(async () => expect(await state("v9")).toEqual(['a:answered:{"ran":"a"}']));
    expect(seen).toHaveLength(2);
    expect(seen[1]!.id).toBe(seen[0]!.id);
  });

  it("keeps the queue across a restart (replayed from the log) and delivers it afterwards", async () => {
    await start();
    const ref = { type: "valve", id: "v10" };
    await test.twins.invoke(ref, "send", { name: "a" });
    await test.restart();
    device("valve", "v10");
    await test.twins.report(ref, { x: 1 });
    await vi.waitFor(async () => expect(await state("v10")).toEqual(['a:answered:{"ran":"a"}']));
  });

  it("keeps a command the node stopped in the middle of (sent, its answer lost) queued: the restarted node delivers it once", async () => {
    await start();
    const ref = { type: "valve", id: "v13" };
    const queued = await test.twins.invoke(ref, "send", { name: "a" });
    const id = (queued.result as { id: string }).id;
    const held = device("valve", "v13", () => new Promise(() => {})); // got it, never answers
    await test.twins.report(ref, { x: 1 });
    await eventually(() => held.seen.length === 1, "the device got the command");
    const counts = test.node.engine.queuedCommands;
    const sent = test.node.devices.commands;
    await test.restart();
    // The stop cut the attempt short: no outcome recorded, no retry counted.
    expect(await types("valve", "v13")).toEqual(["$command.queued", "$reported"]);
    expect(counts).toMatchObject({ delivered: 0, retried: 0 });
    expect(sent).toMatchObject({ sent: 2, offline: 1, notSent: 1, failed: 0 });

    const { seen } = device("valve", "v13");
    await test.twins.report(ref, { x: 2 });
    await eventually(async () => (await state("v13")).length > 0, "the outcome after the restart");
    expect(await state("v13")).toEqual(['a:answered:{"ran":"a"}']);
    expect(seen.map((c) => c.id)).toEqual([id]);
    expect(held.seen.map((c) => c.id)).toEqual([id]);
    expect(await types("valve", "v13")).toEqual([
      "$command.queued",
      "$reported",
      "$reported",
      "$command.delivered",
      "outcome",
    ]);
  });

  it("queues, not fails, a command the node cannot send (its connection closed), retries it, and delivers it after the restart", async () => {
    await start();
    const ref = { type: "valve", id: "v14" };
    device("valve", "v14"); // online: only the node's side is broken
    await test.node.devices.transport.close();
    const queued = await test.twins.invoke(ref, "send", { name: "a" });
    expect(queued.result).toMatchObject({ status: "queued" });
    expect(test.node.devices.commands).toMatchObject({ sent: 1, notSent: 1, offline: 0, failed: 0 });
    await test.advance("1s");
    await eventually(() => test.node.engine.queuedCommands.retried === 1, "a retry, not sent either");
    expect(await types("valve", "v14")).toEqual(["$command.queued"]);
    await test.restart();

    const { seen } = device("valve", "v14");
    await test.twins.report(ref, { x: 1 });
    await eventually(async () => (await state("v14")).length > 0, "the outcome after the restart");
    expect(await state("v14")).toEqual(['a:answered:{"ran":"a"}']);
    expect(seen).toHaveLength(1);
    expect(await types("valve", "v14")).toEqual([
      "$command.queued",
      "$reported",
      "$command.delivered",
      "outcome",
    ]);
  });

  it("fails a direct command of a stopping node with UNAVAILABLE (stopping), and one it cannot send with UNAVAILABLE (not-sent)", async () => {
    await start();
    const bus = test.node.bus;
    const commands = new DeviceCommands(bus.connect(), DEFAULT_JSON_LIMITS);
    const closed = bus.connect();
    const unsent = new DeviceCommands(closed, DEFAULT_JSON_LIMITS);
    await closed.close();
    await expect(unsent.send({ type: "valve", id: "v15" }, "a", {}, 1000)).rejects.toMatchObject({
      code: "UNAVAILABLE",
      message: "device valve/v15: command 'a' not sent: transport is closed",
      details: { device: "valve/v15", reason: "not-sent" },
    });
    commands.stop();
    await expect(commands.send({ type: "valve", id: "v15" }, "a", {}, 1000)).rejects.toMatchObject({
      code: "UNAVAILABLE",
      message: "device valve/v15: command 'a' not sent: the node is stopping",
      details: { device: "valve/v15", reason: "stopping" },
    });
    expect(commands.stats).toMatchObject({ sent: 1, notSent: 1 });
  });

  it("passes the device's error answer to the twin as a failed outcome", async () => {
    await start();
    const ref = { type: "valve", id: "v11" };
    await test.twins.invoke(ref, "send", { name: "a" });
    const client = new DeviceClient({ transport: test.node.bus.connect(), type: "valve", id: "v11" });
    devices.push(client);
    client.onCommand(() => {
      throw new Error("stuck");
    });
    await test.twins.report(ref, { x: 1 });
    await vi.waitFor(async () => expect((await state("v11"))[0]).toMatch(/^a:failed:/));
  });

  it("records the outcome even when onDeviceCommandResult throws", async () => {
    await start();
    const ref = { type: "valve", id: "v12" };
    await test.twins.invoke(ref, "send", { name: "a" });
    Valve.handlerThrows = true;
    device("valve", "v12");
    await test.twins.report(ref, { x: 1 });
    await vi.waitFor(async () =>
      expect(await types("valve", "v12")).toEqual(["$command.queued", "$reported", "$command.delivered"]),
    );
  });

  it("pump example: calibrate waits for an offline pump and is applied when it reports", async () => {
    await start();
    const pump = test.twin(Pump, "p1");
    const queued = await pump.invoke("calibrate", { offsetBar: 0.2 });
    expect(queued).toMatchObject({ status: "queued" });
    expect((await pump.get()).state["calibration"]).toMatchObject({ offsetBar: 0.2, status: "pending" });
    const { seen } = device("pump", "p1", () => ({ offsetBar: 0.2 }));
    await pump.report({ running: false });
    await vi.waitFor(async () =>
      expect((await pump.get()).state["calibration"]).toEqual({ offsetBar: 0.2, status: "applied" }),
    );
    expect(seen).toEqual([
      { command: "calibrate", args: { offsetBar: 0.2 }, id: (queued as { id: string }).id },
    ]);
  });
});
