import { DeviceClient } from "doppel/device";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { reportStamp } from "../../runtime/devices/protocol.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const t1 = { type: "thermostat", id: "t1" };

describe("per-device ordering and exactly-once (stamped reports)", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Thermostat] });
  });
  afterEach(async () => {
    await test.stop();
  });

  const reportedEvents = async () =>
    (await test.twins.history(t1, { limit: 1000 })).filter((e) => e.type === "$reported");

  it("applies a stamped report once, and refuses anything at or below the high-water mark on every delivery", async () => {
    const first = await test.twins.report(t1, { temperature: 20 }, { seq: 10 });
    expect(first.duplicate).toBe(false);
    // The same seq with a different message id (a re-send JetStream no longer deduplicates).
    const again = await test.twins.report(t1, { temperature: 20 }, { seq: 10, messageId: "other" });
    expect(again).toEqual({ version: first.version, duplicate: true, stale: true });
    // An older report that arrives late (redelivered after a newer one) is not applied.
    await test.twins.report(t1, { temperature: 22 }, { seq: 12 });
    const late = await test.twins.report(t1, { temperature: 21 }, { seq: 11 });
    expect(late.stale).toBe(true);
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 22 });
    expect(await reportedEvents()).toHaveLength(2);
    // Unstamped reports keep today's behaviour: applied as they come.
    await test.twins.report(t1, { temperature: 23 });
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 23 });
  });

  it("keeps the high-water mark across restarts and snapshots", async () => {
    for (let seq = 1; seq <= 150; seq++) await test.twins.report(t1, { temperature: seq % 30 }, { seq });
    await test.restart();
    const replayed = await test.twins.report(t1, { temperature: 1 }, { seq: 150 });
    expect(replayed.stale).toBe(true);
    const next = await test.twins.report(t1, { temperature: 2 }, { seq: 151 });
    expect(next.stale).toBeUndefined();
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 2 });
  });

  it("applies an overtaken report late, for the fields no newer report set, and only once", async () => {
    await test.twins.report(t1, { temperature: 20 }, { seq: 10 });
    await test.twins.report(t1, { heating: true }, { seq: 12 });
    // Seq 11 was in flight on a node that crashed; it comes back after seq 12 was applied.
    const late = await test.twins.report(t1, { temperature: 21, heating: false }, { seq: 11 });
    expect(late.stale).toBeUndefined();
    // Its temperature is kept (no newer report set it); its heating is older than seq 12's.
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 21, heating: true });
    const events = await reportedEvents();
    expect(events.at(-1)?.data).toMatchObject({ patch: { temperature: 21 }, seq: 11 });
    // A second delivery of seq 11 (any message id) is a duplicate now.
    const again = await test.twins.report(
      t1,
      { temperature: 21, heating: false },
      { seq: 11, messageId: "x" },
    );
    expect(again.stale).toBe(true);
    // A late report whose every field was set by a newer one is skipped (superseded).
    await test.twins.report(t1, { temperature: 25 }, { seq: 14 });
    const superseded = await test.twins.report(t1, { temperature: 24 }, { seq: 13 });
    expect(superseded.stale).toBe(true);
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 25, heating: true });
    expect(await reportedEvents()).toHaveLength(4);
  });

  it("remembers which stamps were applied across restarts and snapshots, within a window of the latest", async () => {
    // Seq 20 and 140 never arrive in order (overtaken); everything else of 1..150 is applied.
    for (let seq = 1; seq <= 150; seq++)
      if (seq !== 20 && seq !== 140) await test.twins.report(t1, { temperature: seq % 30 }, { seq });
    await test.restart();
    expect((await test.twins.report(t1, { temperature: 1 }, { seq: 139 })).stale).toBe(true);
    const late = await test.twins.report(t1, { firmware: "1.4.0" }, { seq: 140 });
    expect(late.stale).toBeUndefined();
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 0, firmware: "1.4.0" });
    // Overtaken by more reports than the twin remembers one by one: it cannot tell, so it skips it.
    expect((await test.twins.report(t1, { heating: true }, { seq: 20 })).stale).toBe(true);
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 0, firmware: "1.4.0" });
  });

  it("never lets a late field overwrite a newer one (device time), and exposes the field times", async () => {
    await test.twins.report(t1, { temperature: 20, heating: true }, { at: 1000 });
    // Late: temperature was set at 1000, this is from 900; heating was set at 1000 too.
    const late = await test.twins.report(t1, { temperature: 18 }, { at: 900 });
    expect(late.stale).toBe(true);
    await test.twins.report(t1, { temperature: 19, heating: false }, { at: 1100 });
    // Partly late: only the newer field is applied.
    await test.twins.report(t1, { temperature: 17, heating: true }, { at: 1050 });
    const view = await test.twins.get(t1);
    expect(view.reported).toEqual({ temperature: 19, heating: false });
    expect(view.reportedAt).toEqual({ temperature: 1100, heating: 1100 });
  });

  it("writes nothing for an empty patch", async () => {
    await test.twins.report(t1, { temperature: 20 });
    const before = (await test.twins.get(t1)).version;
    const empty = await test.twins.report(t1, {});
    expect(empty.version).toBe(before);
    expect(await reportedEvents()).toHaveLength(1);
  });

  it("DeviceClient stamps its reports; a re-send with the same seq and a new message id applies once", async () => {
    const device = new DeviceClient({ transport: test.node.bus.connect(), type: "thermostat", id: "t1" });
    const first = await device.report({ temperature: 20 });
    expect(first.seq).toBeGreaterThan(Date.now() * 1000 - 60_000_000_000);
    const resent = await device.report({ temperature: 20 }, { seq: first.seq!, messageId: "new-id" });
    expect(resent.duplicate).toBe(true);
    await device.report({ $seq: first.seq! + 1, temperature: 21 });
    expect((await test.twins.get(t1)).reported).toEqual({ temperature: 21 });
    expect(test.node.ingress.stats.stale).toBe(1);
    expect(await reportedEvents()).toHaveLength(2);
    await device.close();
  });

  it("refuses a stamp that is not a positive safe integer", async () => {
    await expect(test.twins.report(t1, { temperature: 1 }, { seq: 0 })).rejects.toThrow(/report seq must be/);
    await expect(test.twins.report(t1, { temperature: 1 }, { seq: 1.5 })).rejects.toThrow(/report seq/);
  });
});

describe("report stamps on the wire", () => {
  const headers = (entries: Record<string, string>) => new Map(Object.entries(entries));

  it("reads Doppel-Seq and Doppel-At headers", () => {
    expect(reportStamp(headers({ "Doppel-Seq": "42", "Doppel-At": "1700" }), { a: 1 })).toEqual({
      stamp: { seq: 42, at: 1700 },
      patch: { a: 1 },
    });
  });

  it("reads and strips $seq and $at from a JSON patch (MQTT has no headers)", () => {
    expect(reportStamp(undefined, { $seq: 7, $at: 5, a: 1 })).toEqual({
      stamp: { seq: 7, at: 5 },
      patch: { a: 1 },
    });
    expect(reportStamp(headers({ "Doppel-Seq": "7" }), { $seq: 7, a: 1 }).stamp).toEqual({ seq: 7 });
  });

  it("leaves unstamped reports alone", () => {
    const patch = { a: 1 };
    expect(reportStamp(headers({}), patch)).toEqual({ stamp: {}, patch });
  });

  it("refuses malformed or disagreeing stamps, naming them", () => {
    expect(() => reportStamp(headers({ "Doppel-Seq": "x1" }), {})).toThrow(
      /header Doppel-Seq must be an integer/,
    );
    expect(() => reportStamp(undefined, { $seq: -1 })).toThrow(/field \$seq must be an integer from 1/);
    expect(() => reportStamp(undefined, { $seq: "9" })).toThrow(/field \$seq/);
    expect(() => reportStamp(headers({ "Doppel-Seq": "2" }), { $seq: 3 })).toThrow(/differ/);
  });
});
