import { FailedPrecondition } from "doppel";
import { TestNode } from "doppel/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Thermostat } from "../../twins/thermostat.ts";

describe("thermostat twin", () => {
  let test: TestNode;
  beforeEach(async () => {
    test = await TestNode.start({ twins: [Thermostat] });
  });
  afterEach(async () => {
    await test.stop();
  });

  it("asks the device to heat when the room is below the set point", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 18, heating: false });
    const view = await t1.get();
    expect(view.state["heatingDemand"]).toBe(true);
    expect(view.desired).toEqual({ heating: true });
    expect(view.delta).toEqual({ heating: true });
  });

  it("clears desired once the device reports it heats", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 18, heating: false });
    await t1.report({ heating: true });
    const view = await t1.get();
    expect(view.desired).toEqual({});
    expect(view.delta).toEqual({});
    expect(view.reported).toEqual({ temperature: 18, heating: true });
  });

  it("changes the set point by command and returns the decision", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 22, heating: false });
    const result = await t1.invoke("setTarget", { celsius: 24 });
    expect(result).toEqual({ setPoint: 24, heating: true });
  });

  it("escalates an over-temperature alarm when the reminder fires", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 35 });
    expect((await t1.get()).state["alarm"]).toBe("raised");
    await test.advance("4m");
    expect((await t1.get()).state["alarm"]).toBe("raised");
    await test.advance("2m");
    expect((await t1.get()).state["alarm"]).toBe("escalated");
  });

  it("refuses to acknowledge an alarm while the room is too hot", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 35 });
    await expect(t1.invoke("acknowledgeAlarm", {})).rejects.toThrow(FailedPrecondition);
    await t1.report({ temperature: 25 });
    expect((await t1.get()).state["alarm"]).toBe("none");
  });

  it("ends a boost with a reminder that survives passivation and restart", async () => {
    const t1 = test.twin(Thermostat, "t1");
    await t1.report({ temperature: 25, heating: false });
    await t1.invoke("boost", { minutes: 30 });
    expect((await t1.get()).state["mode"]).toBe("boost");
    await test.passivateAll();
    expect(test.resident).toBe(0);
    await test.restart();
    await test.advance("31m");
    const view = await t1.get();
    expect(view.state["mode"]).toBe("auto");
    expect(view.state["heatingDemand"]).toBe(false);
  });
});
