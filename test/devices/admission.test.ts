import { afterEach, describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import type { Transport, TransportMessage } from "../../cluster/transport/transport.ts";
import { Admission } from "../../runtime/core/admission.ts";
import { ManualClock } from "../../runtime/core/clock.ts";
import type { TwinApi } from "../../runtime/core/twin-api.ts";
import { DeviceIngress } from "../../runtime/devices/ingress/device-ingress.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const json = (value: unknown) => encoder.encode(JSON.stringify(value));
const parse = (message: TransportMessage) =>
  JSON.parse(decoder.decode(message.data)) as Record<string, unknown>;

const limits = {
  grpc: { maxInFlight: 8, maxInFlightPerClient: 8 },
  device: { maxInFlight: 3, maxInFlightPerClient: 2 },
  node: { maxInFlight: 8, maxInFlightPerClient: 8 },
  watch: { maxInFlight: 2, maxInFlightPerClient: 1 },
};

/** Ingress over an in-process bus in front of a twin API whose reports wait until `open()`. */
function startIngress() {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let entered = 0;
  const waiters: (() => void)[] = [];
  const api = {
    report: async () => {
      entered++;
      for (const wake of waiters.splice(0)) wake();
      await gate;
      return { version: 1, duplicate: false };
    },
  } as unknown as TwinApi;
  const bus = new InProcessBus();
  const admission = new Admission(new ManualClock(), limits);
  const ingress = new DeviceIngress(
    bus.connect(),
    api,
    { maxBytes: 65536, maxDepth: 32 },
    silentLogger(),
    Date.now,
    admission,
  );
  ingress.start();
  return {
    bus,
    admission,
    ingress,
    open: () => open(),
    async entered(count: number) {
      while (entered < count) await new Promise<void>((resolve) => waiters.push(resolve));
    },
  };
}

function report(device: Transport, id: string) {
  return device.request(`doppel.dev.thermostat.${id}.reported`, json({ temperature: 20 }), {
    timeoutMs: 30_000,
  });
}

describe("device ingress admission control", () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  it("refuses a device over its own bound with a throttle error, not applied, while other devices are admitted", async () => {
    const s = startIngress();
    stop = () => s.ingress.stop();
    const device = s.bus.connect();
    const held = [report(device, "t1"), report(device, "t1")];
    await s.entered(2);
    const refused = parse(await report(device, "t1"));
    expect(refused).toMatchObject({
      error: { code: "RESOURCE_EXHAUSTED", details: { class: "device", reason: "client", limit: 2 } },
    });
    expect((refused["error"] as { message: string }).message).toMatch(/this client has 2 device requests/);
    const other = report(device, "t2");
    await s.entered(3);
    // Node-wide bound (3) reached: a third device is refused too, and told on its errors subject
    // when it expects no reply (MQTT).
    const errors = new Promise<Record<string, unknown>>((resolve) =>
      device.subscribe("doppel.dev.thermostat.t3.errors", (message) => resolve(parse(message))),
    );
    device.publish("doppel.dev.thermostat.t3.reported", json({ temperature: 21 }));
    expect(await errors).toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      details: { class: "device", reason: "node", limit: 3 },
      subject: "doppel.dev.thermostat.t3.reported",
    });
    expect(s.ingress.stats).toMatchObject({ throttled: 2, applied: 0, rejected: 0, failed: 0 });
    s.open();
    for (const reply of await Promise.all([...held, other])) expect(parse(reply)).toMatchObject({ ok: true });
    expect(s.ingress.stats).toMatchObject({ throttled: 2, applied: 3 });
    expect(s.admission.stats("device")).toMatchObject({ inFlight: 0, admitted: 3, refused: 2 });
  });

  it("admits and releases a refused-as-invalid message without holding a slot", async () => {
    const s = startIngress();
    stop = () => s.ingress.stop();
    const device = s.bus.connect();
    const bad = parse(
      await device.request("doppel.dev.thermostat.t1.reported", encoder.encode("{nope"), {
        timeoutMs: 30_000,
      }),
    );
    expect(bad).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
    expect(s.admission.stats("device")).toMatchObject({ inFlight: 0, admitted: 1 });
  });
});
