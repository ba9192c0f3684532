import { describe, expect, it } from "vitest";
import { compileEdgeOptions, type EdgeOptions } from "../../../runtime/core/edge-telemetry.ts";
import { TelemetryReducer } from "../../../runtime/devices/edge/telemetry-reducer.ts";

const ref = { type: "thermostat", id: "t1" };
const OPTIONS: EdgeOptions = {
  telemetry: {
    temperature: { every: "1m", reduce: ["min", "max", "avg", "count", "sum", "first", "last"] },
    humidity: { deadband: 0.5 },
  },
};

function reducer(graceMs = 0): TelemetryReducer {
  const compiled = compileEdgeOptions("thermostat", OPTIONS);
  return new TelemetryReducer((type) => (type === "thermostat" ? compiled : undefined), { graceMs });
}

/** Plans and applies one message, as the edge node does once its forward succeeded. */
function feed(r: TelemetryReducer, at: number, metrics: Record<string, number>) {
  const plan = r.plan(ref, [{ at, metrics }]);
  r.apply(plan);
  return plan;
}

describe("edge telemetry reducer", () => {
  it("aggregates a window exactly and hands it out only after its end plus the grace", () => {
    const r = reducer(5000);
    feed(r, 61_000, { temperature: 3 });
    feed(r, 119_000, { temperature: 1 });
    feed(r, 90_000, { temperature: 5 });
    expect(r.due(124_999)).toEqual([]);
    const [window] = r.due(125_000);
    expect(window?.sample).toEqual({
      at: 60_000,
      metrics: {
        "temperature.min": 1,
        "temperature.max": 5,
        "temperature.avg": 3,
        "temperature.count": 3,
        "temperature.sum": 9,
        "temperature.first": 3,
        "temperature.last": 1,
      },
    });
    expect(window?.messageId).toBe("reduce:thermostat/t1:temperature:60000:60000");
    r.closed(window!);
    r.closedThrough(125_000);
    expect(r.openWindows).toBe(0);
    expect(feed(r, 100_000, { temperature: 7 }).late).toBe(1);
    expect(r.openWindows).toBe(0);
  });

  it("forwards a deadband metric only when it moved by the deadband, and undeclared metrics always", () => {
    const r = reducer();
    expect(feed(r, 1, { humidity: 40, pressure: 1 }).forward).toEqual([
      { at: 1, metrics: { humidity: 40, pressure: 1 } },
    ]);
    expect(feed(r, 2, { humidity: 40.4 }).forward).toEqual([]);
    expect(feed(r, 3, { humidity: 40.5 }).forward).toEqual([{ at: 3, metrics: { humidity: 40.5 } }]);
    expect(feed(r, 4, { humidity: 40.1 }).forward).toEqual([]);
  });

  it("changes nothing for a plan that was not applied (its forward failed)", () => {
    const r = reducer();
    r.plan(ref, [{ at: 1, metrics: { humidity: 40, temperature: 1 } }]);
    expect(r.openWindows).toBe(0);
    expect(feed(r, 2, { humidity: 40.1 }).forward).toEqual([{ at: 2, metrics: { humidity: 40.1 } }]);
  });

  it("refuses a declaration it cannot run, naming the metric", () => {
    const bad = (telemetry: unknown) => () =>
      compileEdgeOptions("lamp", { telemetry } as unknown as EdgeOptions);
    expect(bad({ power: { every: "0s", reduce: ["avg"] } })).toThrow(
      /edge.telemetry.power.every must be above zero/,
    );
    expect(bad({ power: { every: "1m", reduce: [] } })).toThrow(/power.reduce must list/);
    expect(bad({ power: { every: "1m", reduce: ["median"] } })).toThrow(/unknown aggregate "median"/);
    expect(bad({ power: { deadband: -1 } })).toThrow(/deadband must be a number of at least 0/);
    expect(bad({ power: { deadband: 1, every: "1m" } })).toThrow(/either every \(with reduce\) or deadband/);
    expect(bad({ power: { every: "soon", reduce: ["avg"] } })).toThrow(/is not a duration/);
  });
});
