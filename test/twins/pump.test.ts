import { FailedPrecondition } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Pump } from "../../twins/pump.ts";

describe("pump twin", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Pump] });
  });
  afterEach(async () => {
    await test.stop();
  });

  it("starts through desired state and follows the device to running", async () => {
    const p = test.twin(Pump, "p1");
    expect(await p.invoke("start", { rpm: 1200 })).toEqual({ status: "starting", rpm: 1200 });
    expect((await p.get()).delta).toEqual({ running: true, rpm: 1200 });
    await p.report({ running: true, rpm: 1200, flowLpm: 300 });
    const view = await p.get();
    expect(view.state["status"]).toBe("running");
    expect(view.state["efficiency"]).toBe(250);
    expect(view.desired).toEqual({});
  });

  it("uses the default speed when start has no rpm", async () => {
    expect(await test.twin(Pump, "p1").invoke("start", {})).toEqual({ status: "starting", rpm: 1450 });
  });

  it("stops itself on over-pressure and refuses to start until the fault is cleared", async () => {
    const p = test.twin(Pump, "p1");
    await p.invoke("start", { rpm: 1200 });
    await p.report({ running: true, rpm: 1200, pressureBar: 9.5 });
    const view = await p.get();
    expect(view.state["status"]).toBe("fault");
    expect(view.desired).toEqual({ running: false });
    await expect(p.invoke("start", { rpm: 1000 })).rejects.toThrow("active over-pressure fault");
    await expect(p.invoke("clearFault", { note: "checked valve" })).rejects.toThrow(FailedPrecondition);
    await p.report({ running: false, pressureBar: 3 });
    expect(await p.invoke("clearFault", { note: "checked valve" })).toEqual({ status: "stopped" });
    expect(await p.invoke("start", { rpm: 1000 })).toMatchObject({ status: "starting" });
    expect((await p.get()).state["faults"]).toHaveLength(1);
  });

  it("grades health from vibration", async () => {
    const p = test.twin(Pump, "p1");
    await p.report({ vibrationMm: 1.0 });
    expect((await p.get()).state["health"]).toBe("good");
    await p.report({ vibrationMm: 4.5 });
    expect((await p.get()).state["health"]).toBe("watch");
    await p.report({ vibrationMm: 8 });
    const view = await p.get();
    expect(view.state["health"]).toBe("critical");
    expect(view.state["status"]).toBe("fault");
  });

  it("calls for maintenance by run hours and by a scheduled date", async () => {
    const p = test.twin(Pump, "p1");
    await p.report({ runHours: 499 });
    expect((await p.get()).state["maintenanceDue"]).toBe(false);
    await p.report({ runHours: 501 });
    expect((await p.get()).state["maintenanceDue"]).toBe(true);
    expect(await p.invoke("completeMaintenance", { technician: "Ada" })).toEqual({ nextDueAtHours: 1001 });
    const at = new Date(test.clock.now() + 86_400_000).toISOString();
    await p.invoke("scheduleMaintenance", { at });
    await test.advance("23h");
    expect((await p.get()).state["maintenanceDue"]).toBe(false);
    await test.advance("2h");
    expect((await p.get()).state["maintenanceDue"]).toBe(true);
  });

  it("refuses a speed change while stopped and a maintenance date in the past", async () => {
    const p = test.twin(Pump, "p1");
    await expect(p.invoke("setSpeed", { rpm: 900 })).rejects.toThrow(
      "cannot set speed while the pump is stopped",
    );
    await expect(p.invoke("scheduleMaintenance", { at: "2020-01-01T00:00:00Z" })).rejects.toThrow(
      "in the future",
    );
    await expect(p.invoke("scheduleMaintenance", { at: "tomorrow" })).rejects.toThrow("invalid arguments");
  });
});
