/**
 * Queued device commands across node restarts, against a real nats-server: a pump twin on SQLite
 * (a temp file) queues `calibrate` for its offline pump; the node stops while the pump is offline,
 * and again while the command is on its way (the pump got it, its answer is lost with the node's
 * connection); each time a new node starts on the same file and NATS. When the pump comes back the
 * command is delivered once and its outcome recorded once: the node's stop is no answer of the
 * device's, so it never settles the command as failed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RemoteEvent } from "doppel/client";
import { DeviceClient } from "doppel/device";
import { SqliteEventStore } from "doppel/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import {
  deviceTransport,
  eventually,
  type NatsNode,
  natsUrl,
  resetStream,
  startNatsNode,
} from "./harness.ts";

const PUMP = { type: "pump", id: "restart-p1" };

describe("queued device commands across node restarts (SQLite, NATS)", () => {
  let dir: string;
  let wire: NatsTransport;
  let node: (NatsNode & { store: SqliteEventStore }) | undefined;
  const devices: DeviceClient[] = [];

  beforeAll(async () => {
    await resetStream();
    dir = mkdtempSync(join(tmpdir(), "doppel-queued-restart-"));
    wire = await deviceTransport();
  });
  afterEach(async () => {
    for (const d of devices.splice(0)) await d.close();
    await stopNode();
  });
  afterAll(async () => {
    await wire?.close();
    await resetStream();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A node on the test's SQLite file (the same twins, whichever node wrote them). */
  async function startNode(): Promise<NatsNode & { store: SqliteEventStore }> {
    const store = new SqliteEventStore({ path: join(dir, "twins.db") });
    node = { ...(await startNatsNode({ store })), store };
    return node;
  }
  async function stopNode(): Promise<void> {
    const stopping = node;
    node = undefined;
    await stopping?.stop();
    await stopping?.store.close();
  }

  async function history(n: NatsNode): Promise<RemoteEvent[]> {
    const events: RemoteEvent[] = [];
    for await (const event of n.client.history(PUMP)) events.push(event);
    return events;
  }
  const calibration = async (n: NatsNode) =>
    (await n.client.getTwin(PUMP)).state["calibration"] as Record<string, unknown> | null;

  it("delivers a queued command once, its outcome recorded once, after stops while the pump is offline and mid-delivery", async () => {
    // The pump remembers what it ran (by command id), across its own reconnects.
    const ran = new Map<string, number>();
    const received: string[][] = [];
    /** The pump online: `answers` false drops off before answering (the answer is lost). */
    const connectPump = async (answers: boolean) => {
      const got: string[] = [];
      received.push(got);
      const pump = new DeviceClient({ transport: wire, ...PUMP });
      devices.push(pump);
      pump.onCommand((command, args, { id }) => {
        got.push(id);
        if (command === "calibrate" && !ran.has(id)) ran.set(id, Number(args["offsetBar"]));
        return answers ? { applied: ran.get(id) ?? null } : new Promise(() => {});
      });
      await wire.connection.flush(); // the subscription is in place at the server
      return pump;
    };

    let n = await startNode();
    const { result } = await n.client.invoke(PUMP, "calibrate", { offsetBar: 0.4 });
    expect(result).toMatchObject({ status: "queued" });
    const id = (result as { id: string }).id;

    // Stopped while the pump is offline: still queued on the next node.
    await stopNode();
    n = await startNode();
    expect(await calibration(n)).toEqual({ offsetBar: 0.4, status: "pending", detail: id });

    // The pump comes back and gets the command, but drops off before answering; the node stops.
    const first = await connectPump(false);
    await first.report({ running: false, pressureBar: 2.0 });
    await eventually(() => (received[0]!.length > 0 ? true : undefined), "the pump got the command");
    const sent = n.node.devices.commands;
    await stopNode();
    await first.close();
    expect(sent.failed).toBe(0);

    n = await startNode();
    expect((await history(n)).map((e) => e.type)).toEqual([
      "$command.queued",
      "calibrationQueued",
      "$reported",
    ]);
    expect(await calibration(n)).toMatchObject({ status: "pending" });

    // Back again, answering: the resend (same id) is delivered and recorded once.
    await connectPump(true);
    await devices[1]!.report({ running: false, pressureBar: 2.1 });
    const applied = await eventually(async () => {
      const c = await calibration(n);
      return c?.["status"] === "pending" ? undefined : c;
    }, "the calibration's outcome");
    expect(applied).toEqual({ offsetBar: 0.4, status: "applied" });
    expect([...ran]).toEqual([[id, 0.4]]);
    expect(received.flat().every((seen) => seen === id)).toBe(true);
    const events = await history(n);
    expect(events.map((e) => e.type)).toEqual([
      "$command.queued",
      "calibrationQueued",
      "$reported",
      "$reported",
      "$command.delivered",
      "calibrated",
    ]);
    expect(events.find((e) => e.type === "$command.delivered")?.data).toEqual({
      type: "$command.delivered",
      id,
      command: "calibrate",
      result: { applied: 0.4 },
    });
    expect(n.node.engine.queuedCommands).toMatchObject({ delivered: 1, expired: 0 });
  });

  it("a request still waiting when its NATS connection closes fails as `closed` (not sent), not as rejected", async () => {
    const silent = await NatsTransport.connect({ servers: natsUrl(), name: "queued-restart-silent" });
    const asker = await NatsTransport.connect({ servers: natsUrl(), name: "queued-restart-asker" });
    let asked = false;
    silent.subscribe("doppel.test.queued-restart.silent", () => {
      asked = true; // never answers
    });
    try {
      await silent.connection.flush();
      const waiting = asker.request("doppel.test.queued-restart.silent", new Uint8Array(), {
        timeoutMs: 60_000,
      });
      const failure = waiting.then(
        () => undefined,
        (error: unknown) => error,
      );
      await eventually(() => asked, "the request reached its subscriber");
      await asker.connection.close();
      expect(await failure).toMatchObject({ name: "TransportError", failure: "closed" });
    } finally {
      await asker.close();
      await silent.close();
    }
  });
});
