/**
 * Simulated devices: a model of how a kind of device behaves, used by the demo fleet of
 * `npm start` and by `doppel sim`. Twin authors can write one beside their twin to see it live.
 */
import type { Json, JsonObject } from "../core/json.ts";

/** What one simulated device does at each step. */
export interface DeviceStep {
  /** A reported-state patch to send, if anything changed. */
  readonly reported?: JsonObject;
  /** Telemetry metrics to send. */
  readonly telemetry?: Readonly<Record<string, number>>;
}

/** One simulated device instance. */
export interface SimulatedDevice {
  /** Advances the device's physics by `dtMs`; `random` is uniform in [0, 1). */
  step(dtMs: number, random: () => number): DeviceStep;
  /** Applies desired state the twin sent (the whole current desired object). */
  onDesired(desired: JsonObject): void;
  /** Answers a command the twin sent; unknown commands should throw. */
  command?(name: string, args: JsonObject): Json;
}

/** A kind of simulated device, for one twin type. */
export interface DeviceModel {
  readonly type: string;
  create(id: string, random: () => number): SimulatedDevice;
}
