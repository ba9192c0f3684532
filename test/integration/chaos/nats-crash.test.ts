import { describe, expect, it } from "vitest";
import { runNatsCrashScenario } from "./nats-crash-scenario.ts";

/**
 * kill -9 of nats-server (JetStream file storage) while devices report, restarted on the same
 * port and storage, twice (see `nats-crash-scenario.ts`; `npm run bench:chaos` runs it longer).
 * Every report a device saw acknowledged must be applied exactly once and in order; each twin
 * ends at its device's last report; no twin is quarantined.
 */
describe("kill -9 of nats-server under load", () => {
  it("loses nothing acknowledged, applies nothing twice or out of order, twice over", async () => {
    const result = await runNatsCrashScenario({ devices: 10, crashes: 2, reportsPerPhase: 100 });
    console.log(JSON.stringify(result));
    // The faults happened: the devices lost their server twice.
    expect(result.disconnects).toBeGreaterThanOrEqual(2);
    expect(result.acknowledged).toBeGreaterThanOrEqual(400);
    expect(result).toMatchObject({
      lost: 0,
      superseded: 0,
      duplicated: 0,
      outOfOrder: 0,
      wrongFinal: 0,
      quarantined: 0,
    });
  }, 300_000);
});
