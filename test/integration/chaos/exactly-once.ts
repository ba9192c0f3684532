/**
 * The accounting of the fault scenarios: devices that report numbered values (each report stamped
 * with a per-device sequence number by `DeviceClient`, re-sent with the same message id and seq
 * until it is acknowledged), and the check, for every report a device saw acknowledged, that its
 * effect is in its twin's log exactly once and in order, and that each twin ends at its device's
 * last report.
 */

import type { EventRecord, TwinRef } from "doppel";
import type { DeviceClient } from "doppel/device";

/** One simulated device: the values it saw acknowledged, in order. */
export interface DeviceRun {
  readonly ref: TwinRef;
  readonly acked: number[];
  /** Reports that had to be re-sent (the server or node was down, or the ack was late). */
  resent: number;
}

/** The most values one device can report: the thermostat's schema allows -60..150 °C. */
const MAX_VALUE = 15_000;

/**
 * The report carrying `value` (1, 2, 3...): its temperature in hundredths of a degree, so a device
 * can send 15,000 distinct values that the thermostat's schema (at most 150 °C) accepts. A value
 * beyond the schema would be acknowledged by JetStream, then refused by the twin, and counted lost.
 */
export function reportOf(value: number): { temperature: number } {
  if (!Number.isInteger(value) || value < 1 || value > MAX_VALUE)
    throw new Error(`value ${value} is outside 1..${MAX_VALUE}: the thermostat would refuse it`);
  return { temperature: value / 100 };
}

/** The value a reported temperature carries (see `reportOf`), or undefined. */
export function reportedValue(temperature: unknown): number | undefined {
  return typeof temperature === "number" ? Math.round(temperature * 100) : undefined;
}

/**
 * Reports the values 1, 2, 3... (see `reportOf`) from `device` until `running()` is false; each report is
 * re-sent (same message id, same seq) until acknowledged, so every value ends acknowledged.
 */
export async function reportUntil(
  device: DeviceClient,
  run: DeviceRun,
  running: () => boolean,
): Promise<void> {
  for (let value = 1; running(); value++) {
    const seq = device.nextSeq();
    const messageId = `${run.ref.id}-${value}`;
    for (;;) {
      try {
        await device.report(reportOf(value), { messageId, ...(seq === undefined ? {} : { seq }) });
        run.acked.push(value);
        break;
      } catch {
        run.resent++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}

/** What the twins' logs say about the acknowledged reports. */
export interface Accounting {
  acknowledged: number;
  /** Acknowledged, never applied, and no newer report of its device was applied instead. */
  lost: number;
  /**
   * Acknowledged but skipped: a newer report of the same device reached the twin first (a
   * redelivery overtaken by a later message), so the twin, which never applies a report after a
   * newer one, dropped it as stale. Its fields are those of the newer report when each report
   * carries the device's whole state, as here; a patch of other fields would be lost with it.
   */
  superseded: number;
  duplicated: number;
  outOfOrder: number;
  /** Twins whose reported value is not their device's last acknowledged report. */
  wrongFinal: number;
}

/** Reads every device's twin log, and counts the twins that are quarantined. */
export async function readLogs(
  runs: readonly DeviceRun[],
  history: (ref: TwinRef) => Promise<EventRecord[]>,
  isQuarantined: (ref: TwinRef) => Promise<boolean>,
): Promise<{ logs: Map<string, EventRecord[]>; quarantined: number }> {
  const logs = new Map<string, EventRecord[]>();
  let quarantined = 0;
  for (const run of runs) {
    logs.set(`${run.ref.type}/${run.ref.id}`, await history(run.ref));
    if (await isQuarantined(run.ref)) quarantined++;
  }
  return { logs, quarantined };
}

/** Counts, for each device, its acknowledged values against its twin's `$reported` events. */
export function account(
  runs: readonly DeviceRun[],
  logs: ReadonlyMap<string, readonly EventRecord[]>,
  finals: ReadonlyMap<string, unknown>,
): Accounting {
  const result: Accounting = {
    acknowledged: 0,
    lost: 0,
    superseded: 0,
    duplicated: 0,
    outOfOrder: 0,
    wrongFinal: 0,
  };
  for (const run of runs) {
    const key = `${run.ref.type}/${run.ref.id}`;
    const applied = (logs.get(key) ?? [])
      .filter((e) => e.type === "$reported")
      .map((e) => reportedValue((e.data["patch"] as { temperature?: unknown }).temperature));
    const seen = new Map<number, number>();
    for (const value of applied) if (typeof value === "number") seen.set(value, (seen.get(value) ?? 0) + 1);
    result.acknowledged += run.acked.length;
    for (const value of run.acked) {
      const times = seen.get(value) ?? 0;
      if (times === 0 && applied.some((v) => typeof v === "number" && v > value)) result.superseded++;
      else if (times === 0) result.lost++;
      if (times > 1) result.duplicated += times - 1;
    }
    for (let i = 1; i < applied.length; i++)
      if ((applied[i] ?? 0) <= (applied[i - 1] ?? 0)) result.outOfOrder++;
    const last = run.acked.at(-1);
    if (last !== undefined && finals.get(key) !== last) result.wrongFinal++;
  }
  return result;
}
