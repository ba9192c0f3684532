/**
 * A stuck twin gives back every message it holds, not one window per deadline: with a store whose
 * commits of one twin never return (until the test opens the gate), a 1 s `processingDeadline`
 * and windows of 4, the first message of the window that gets no answer takes the 8 messages
 * queued behind the window back to the server with it. None of those is processed on its first
 * delivery (without this each would wait a deadline of its own in a later window, holding its
 * ack-pending slot); another twin's reports flow meanwhile, and once the gate opens every report
 * is applied exactly once.
 */
import { DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeviceIngress } from "../../../runtime/devices/ingress/device-ingress.ts";
import { deviceTransport, eventually, gatedStore, natsUrl, resetStream, startNatsNode } from "./harness.ts";

const STUCK = "stuck";
const FREE = "free";
const WINDOW = 4;
/** Three windows' worth: 8 wait in the node behind the stuck twin's window. */
const STUCK_REPORTS = 3 * WINDOW;
const FREE_REPORTS = 5;

/**
 * Records, for each message id the ingress processes, how many redeliveries the node had counted
 * when it first processed it (0: it was processed on its first delivery, before any redelivery).
 */
function recordFirstProcessing(ingress: DeviceIngress, redelivered: () => number): Map<string, number> {
  const first = new Map<string, number>();
  const process = ingress.process.bind(ingress);
  ingress.process = (subject, data, messageId, options) => {
    if (messageId !== undefined && !first.has(messageId)) first.set(messageId, redelivered());
    return process(subject, data, messageId, options);
  };
  return first;
}

describe("durable ingress with a stuck twin", () => {
  beforeAll(() => resetStream());
  afterAll(() => resetStream());

  it("naks the messages queued behind a window that got no answer; other twins flow; each report applied once", async () => {
    const stuck = gatedStore((commit) => commit.ref.id === STUCK);
    const node = await startNatsNode({
      store: stuck.store,
      config: {
        nats: {
          servers: natsUrl(),
          consumer: {
            ackWait: "2s",
            maxAckPending: 128,
            maxInFlightPerTwin: WINDOW,
            processingDeadline: "1s",
          },
        },
      },
    });
    const wire = await deviceTransport();
    try {
      const durable = node.node.devices.durable!;
      const firstProcessed = recordFirstProcessing(node.node.ingress, () => durable.stats.redelivered);
      const stuckDevice = new DeviceClient({ transport: wire, type: "thermostat", id: STUCK });
      for (let i = 0; i < STUCK_REPORTS; i++)
        await stuckDevice.report({ temperature: 18 + i / 10 }, { messageId: `${STUCK}-m${i}` });
      await eventually(() => stuck.waiting() === 1, "the stuck twin's first commit waits at the gate");

      const freeDevice = new DeviceClient({ transport: wire, type: "thermostat", id: FREE });
      for (let i = 0; i < FREE_REPORTS; i++)
        await freeDevice.report({ temperature: 20 + i / 10 }, { messageId: `${FREE}-m${i}` });
      // Every stuck message was nak'ed (the queued ones with the first window message that got no
      // answer) and has come again.
      await eventually(
        () => durable.stats.retried >= STUCK_REPORTS && durable.stats.redelivered >= STUCK_REPORTS,
        "every message of the stuck twin nak'ed and redelivered",
        30_000,
      );
      // The other twin's reports flow while the stuck twin's commit still waits.
      expect(stuck.waiting()).toBe(1);
      await eventually(async () => {
        const events = await node.node.twins.history({ type: "thermostat", id: FREE }, { limit: 1000 });
        return events.filter((e) => e.type === "$reported").length === FREE_REPORTS;
      }, "the free twin's reports applied");

      stuck.open();
      await eventually(
        () => durable.stats.acked === STUCK_REPORTS + FREE_REPORTS && durable.stats.held === 0,
        "every report acknowledged",
        60_000,
      );
      // The window's messages were processed on their first delivery; those queued behind it were
      // given back unprocessed (without waiting a deadline each in a later window).
      for (let i = 0; i < STUCK_REPORTS; i++) {
        const first = firstProcessed.get(`${STUCK}-m${i}`);
        if (i < WINDOW) expect(first, `${STUCK}-m${i}`).toBe(0);
        else expect(first, `${STUCK}-m${i} processed on its first delivery`).toBeGreaterThan(0);
      }
      const events = await node.node.twins.history({ type: "thermostat", id: STUCK }, { limit: 1000 });
      const causations = events.filter((e) => e.type === "$reported").map((e) => e.causation);
      expect([...causations].sort()).toEqual(
        Array.from({ length: STUCK_REPORTS }, (_, i) => `${STUCK}-m${i}`).sort(),
      );
      const free = await node.node.twins.history({ type: "thermostat", id: FREE }, { limit: 1000 });
      expect(free.filter((e) => e.type === "$reported").map((e) => e.causation)).toEqual(
        Array.from({ length: FREE_REPORTS }, (_, i) => `${FREE}-m${i}`),
      );
    } finally {
      stuck.open();
      await wire.close();
      await node.stop();
    }
  }, 120_000);
});
