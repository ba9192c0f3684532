/**
 * A slow store does not make the server redeliver what the node still holds: with a 2 s `ackWait`
 * and every report's commit held by a gate the test opens, the node sends progress acks for the
 * messages it holds (in its twins' mailboxes and queued behind them) for several `ackWait`s;
 * once the gate opens every report is applied exactly once, in order per twin, with no
 * redelivery and no nak.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { DeviceClient } from "doppel/device";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import {
  deviceTransport,
  eventually,
  gatedStore,
  natsUrl,
  resetStream,
  startNatsNode,
  streamMessages,
} from "./harness.ts";

const TWINS = ["slow-a", "slow-b", "slow-c"];
/** More than `maxInFlightPerTwin` (8) per twin: some wait in the node behind their twin's window. */
const PER_TWIN = 12;
const TOTAL = TWINS.length * PER_TWIN;

describe("durable ingress over a slow store", () => {
  beforeAll(() => resetStream());
  afterAll(() => resetStream());

  it("keeps held messages with progress acks past ackWait: no redelivery, each report applied once, in order", async () => {
    const gated = gatedStore();
    // ackWait 2 s: progress rounds every 500 ms leave a loaded machine's event loop 1.5 s of slack.
    const node = await startNatsNode({
      store: gated.store,
      config: {
        nats: { servers: natsUrl(), consumer: { ackWait: "2s", maxAckPending: 128, maxInFlightPerTwin: 8 } },
      },
    });
    const wire = await deviceTransport();
    try {
      const durable = node.node.devices.durable!;
      for (const twin of TWINS) {
        const device = new DeviceClient({ transport: wire, type: "thermostat", id: twin });
        for (let i = 0; i < PER_TWIN; i++)
          await device.report({ temperature: 18 + i / 10 }, { messageId: `${twin}-m${i}` });
      }
      // Nothing may be settled or come again while the gate is shut.
      const nothingSettled = () => {
        expect(durable.stats.acked).toBe(0);
        expect(durable.stats.retried).toBe(0);
        expect(durable.stats.redelivered).toBe(0);
      };
      await eventually(() => {
        nothingSettled();
        return durable.stats.delivered === TOTAL && durable.stats.held === TOTAL && gated.waiting() > 0;
      }, "every report delivered and held, commits waiting at the gate");
      // Every round sends a progress ack for each of the TOTAL held messages: five rounds from
      // now, ackWait / 4 apart, span a whole ackWait after the last delivery.
      const from = durable.stats.progressed;
      await eventually(
        () => {
          nothingSettled();
          return durable.stats.progressed >= from + 5 * TOTAL;
        },
        "five progress rounds over every held message",
        30_000,
      );
      nothingSettled();
      gated.open();

      await eventually(() => durable.stats.acked === TOTAL, `${TOTAL} reports acknowledged`, 30_000);
      for (const twin of TWINS) {
        const events = await node.node.twins.history({ type: "thermostat", id: twin }, { limit: 1000 });
        expect(events.filter((e) => e.type === "$reported").map((e) => e.causation)).toEqual(
          Array.from({ length: PER_TWIN }, (_, i) => `${twin}-m${i}`),
        );
      }
      expect(node.node.ingress.stats.applied).toBe(TOTAL);
      expect(durable.stats).toMatchObject({ redelivered: 0, retried: 0, alreadyPersisted: 0, held: 0 });
      const transport = await NatsTransport.connect({ servers: natsUrl() });
      try {
        const jsm = await jetstreamManager(transport.connection);
        // Acks are sent without waiting for the server: wait until it has taken them all.
        const info = await eventually(async () => {
          const info = await jsm.consumers.info(durable.stream.name, durable.consumerName);
          return info.num_ack_pending === 0 ? info : undefined;
        }, "the server has every ack");
        expect(info.num_redelivered).toBe(0);
        expect(info.delivered.consumer_seq).toBe(TOTAL);
        expect(await streamMessages()).toBe(0);
      } finally {
        await transport.close();
      }
    } finally {
      gated.open();
      await wire.close();
      await node.stop();
    }
  }, 90_000);
});
