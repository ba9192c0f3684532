import { describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import type { TransportMessage } from "../../cluster/transport/transport.ts";
import type { TwinChange, TwinView } from "../../runtime/core/records.ts";
import { pushDesiredToDevices } from "../../runtime/devices/egress/desired-push.ts";
import { ChangeFeed } from "../../runtime/engine/change-feed.ts";

/** A change to twin thermostat/t1's desired state whose view counts how often it is read. */
function desiredChange(reads: { count: number }): TwinChange {
  const view: TwinView = {
    type: "thermostat",
    id: "t1",
    version: 3,
    state: {},
    reported: { heating: false },
    desired: { heating: true },
    delta: { heating: true },
    createdAt: 1,
    updatedAt: 2,
  };
  return {
    ref: { type: "thermostat", id: "t1" },
    events: [
      {
        seq: 3,
        type: "$desired",
        data: { type: "$desired", patch: { heating: true } },
        at: 2,
        commitId: "c1",
        writer: { node: "n1", epoch: 1 },
      },
    ],
    get view() {
      reads.count++;
      return view;
    },
  };
}

describe("the desired push", () => {
  it("sends {version, desired, delta} to a listening device, and builds nothing when no one listens", async () => {
    const bus = new InProcessBus();
    const feed = new ChangeFeed();
    const stop = pushDesiredToDevices(feed, bus.connect());
    const reads = { count: 0 };

    // Nobody subscribes to the device's subject: the change's view is not even read.
    feed.publish("thermostat/t1", desiredChange(reads));
    expect(reads.count).toBe(0);

    const device = bus.connect();
    const got = new Promise<TransportMessage>((resolve) =>
      device.subscribe("doppel.dev.thermostat.t1.desired", resolve),
    );
    feed.publish("thermostat/t1", desiredChange(reads));
    const push = JSON.parse(new TextDecoder().decode((await got).data));
    expect(push).toEqual({ version: 3, desired: { heating: true }, delta: { heating: true } });
    expect(reads.count).toBeGreaterThan(0);
    stop();
  });
});
