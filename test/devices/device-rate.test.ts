import { describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import { DeviceRate, MAX_PREPAID } from "../../runtime/devices/ingress/device-rate.ts";

describe("device rate: one bucket per device, each message charged once", () => {
  it("does not charge a message again at ingress that a listener charged as it arrived", () => {
    const rate = new DeviceRate(new ManualClock(), { ratePerSecond: 0.001, burst: 2 });
    rate.prepay("thermostat/t1", "http:a");
    rate.prepay("thermostat/t1", "http:b");
    // Ingress consumes both: paid for, allowed without a token.
    expect(rate.take("thermostat/t1", "http:a")).toEqual({ allowed: true });
    expect(rate.take("thermostat/t1", "http:b")).toEqual({ allowed: true });
    expect(rate.prepaid).toBe(0);
    // The bucket is empty: a third message, by either way, is refused.
    expect(rate.take("thermostat/t1", "nats:c").allowed).toBe(false);
    expect(() => rate.prepay("thermostat/t1", "http:d")).toThrow(/over its rate/);
    // Another device has its own bucket.
    expect(rate.take("thermostat/t2", "nats:e").allowed).toBe(true);
  });

  it("charges a paid-for message id only once: the second delivery of it is charged", () => {
    const rate = new DeviceRate(new ManualClock(), { ratePerSecond: 0.001, burst: 2 });
    rate.prepay("thermostat/t1", "m");
    expect(rate.take("thermostat/t1", "m").allowed).toBe(true);
    expect(rate.take("thermostat/t1", "m").allowed).toBe(true); // the second token
    expect(rate.take("thermostat/t1", "m").allowed).toBe(false);
  });

  it("charges a message no ingress here takes without remembering it", () => {
    const rate = new DeviceRate(new ManualClock(), { ratePerSecond: 0.001, burst: 2 });
    rate.charge("pump/p1");
    rate.charge("pump/p1");
    expect(rate.prepaid).toBe(0);
    expect(() => rate.charge("pump/p1")).toThrow(/over its rate/);
  });

  it("forgets a message that was not stored, and remembers at most MAX_PREPAID", () => {
    const clock = new ManualClock();
    const rate = new DeviceRate(clock, { ratePerSecond: 1_000_000, burst: MAX_PREPAID + 10 });
    rate.prepay("thermostat/t1", "lost");
    rate.forget("thermostat/t1", "lost");
    expect(rate.prepaid).toBe(0);
    for (let i = 0; i <= MAX_PREPAID; i++) rate.prepay("thermostat/t1", `m${i}`);
    expect(rate.prepaid).toBe(MAX_PREPAID);
  });
});
