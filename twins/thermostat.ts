/**
 * Thermostat: the first example twin.
 *
 * The device reports its room temperature (and whether its heater is on). The twin decides
 * whether to heat — with hysteresis around the set point — and tells the device through desired
 * state. Above `maxTemperature` it raises an alarm and sets a reminder: if the room is still too
 * hot when the reminder fires, the alarm escalates. Services change the set point, the mode, or
 * start a timed boost (a reminder ends it).
 */
import { type EdgeOptions, FailedPrecondition, type Reminder, Twin, z } from "doppel";

/** What the device reports. */
export const ThermostatReported = z
  .object({
    temperature: z.number().min(-60).max(150),
    heating: z.boolean(),
    firmware: z.string().max(32),
  })
  .partial();
export type ThermostatReported = z.infer<typeof ThermostatReported>;

export type ThermostatMode = "auto" | "off" | "boost";
export type AlarmLevel = "none" | "raised" | "escalated";

export interface ThermostatState {
  readonly setPoint: number;
  readonly hysteresis: number;
  readonly maxTemperature: number;
  readonly mode: ThermostatMode;
  /** Whether the twin wants the heater on. */
  readonly heatingDemand: boolean;
  readonly alarm: AlarmLevel;
  /** Temperature that raised the current alarm. */
  readonly alarmTemperature: number | null;
}

export type ThermostatEvent =
  | { readonly type: "setPointChanged"; readonly setPoint: number }
  | { readonly type: "modeChanged"; readonly mode: ThermostatMode }
  | { readonly type: "heatingDecided"; readonly heating: boolean; readonly temperature: number | null }
  | { readonly type: "alarmRaised"; readonly temperature: number }
  | { readonly type: "alarmEscalated"; readonly temperature: number }
  | { readonly type: "alarmCleared"; readonly temperature: number }
  | { readonly type: "alarmAcknowledged" };

/** How long a room may stay too hot before the alarm escalates. */
export const ESCALATE_AFTER = "5m";

export class Thermostat extends Twin<ThermostatState, ThermostatEvent, ThermostatReported> {
  static readonly type = "thermostat";
  static readonly reported = ThermostatReported;
  static readonly desired = z.object({ heating: z.boolean() }).partial();
  static readonly commands = {
    /** Sets the target temperature. */
    setTarget: z.object({ celsius: z.number().min(5).max(35) }),
    /** auto: regulate; off: never heat; boost: heat regardless for a while (see boost). */
    setMode: z.object({ mode: z.enum(["auto", "off"]) }),
    /** Heats regardless of temperature for `minutes`, then returns to auto. */
    boost: z.object({ minutes: z.number().int().min(1).max(240) }),
    /** Acknowledges an alarm; refused while the room is still too hot. */
    acknowledgeAlarm: z.object({}),
  };
  /**
   * At an edge (docs/edge.md), the cloud gets one minute's min/max/avg of the room temperature
   * instead of every sample, and the heater's on/off (0/1) only when it changes; raw samples stay
   * at the edge.
   */
  static readonly edge: EdgeOptions = {
    telemetry: {
      temperature: { every: "1m", reduce: ["min", "max", "avg"] },
      heating: { deadband: 1 },
    },
  };

  initialState(): ThermostatState {
    return {
      setPoint: 21,
      hysteresis: 0.5,
      maxTemperature: 30,
      mode: "auto",
      heatingDemand: false,
      alarm: "none",
      alarmTemperature: null,
    };
  }

  apply(state: ThermostatState, event: ThermostatEvent): ThermostatState {
    switch (event.type) {
      case "setPointChanged":
        return { ...state, setPoint: event.setPoint };
      case "modeChanged":
        return { ...state, mode: event.mode };
      case "heatingDecided":
        return { ...state, heatingDemand: event.heating };
      case "alarmRaised":
        return { ...state, alarm: "raised", alarmTemperature: event.temperature };
      case "alarmEscalated":
        return { ...state, alarm: "escalated", alarmTemperature: event.temperature };
      case "alarmCleared":
      case "alarmAcknowledged":
        return { ...state, alarm: "none", alarmTemperature: null };
    }
  }

  override onReported(patch: ThermostatReported): void {
    if (patch.temperature !== undefined) {
      this.#checkAlarm(patch.temperature);
      this.#decideHeating();
    }
  }

  setTarget({ celsius }: { celsius: number }) {
    if (celsius !== this.state.setPoint) this.emit({ type: "setPointChanged", setPoint: celsius });
    this.#decideHeating();
    return { setPoint: this.state.setPoint, heating: this.state.heatingDemand };
  }

  setMode({ mode }: { mode: "auto" | "off" }) {
    if (mode !== this.state.mode) this.emit({ type: "modeChanged", mode });
    this.cancel("boost-end");
    this.#decideHeating();
    return { mode: this.state.mode, heating: this.state.heatingDemand };
  }

  boost({ minutes }: { minutes: number }) {
    if (this.state.mode !== "boost") this.emit({ type: "modeChanged", mode: "boost" });
    this.schedule("boost-end", { after: minutes * 60_000 });
    this.#decideHeating();
    return { until: new Date(this.now.getTime() + minutes * 60_000).toISOString() };
  }

  acknowledgeAlarm() {
    if (this.state.alarm === "none") return { alarm: "none" };
    const temperature = this.reported.temperature;
    if (temperature !== undefined && temperature > this.state.maxTemperature) {
      throw new FailedPrecondition(`cannot acknowledge: the room is still at ${temperature} °C`);
    }
    this.emit({ type: "alarmAcknowledged" });
    this.cancel("alarm-escalation");
    return { alarm: "none" };
  }

  override onReminder(reminder: Reminder): void {
    if (reminder.name === "boost-end" && this.state.mode === "boost") {
      this.emit({ type: "modeChanged", mode: "auto" });
      this.#decideHeating();
    }
    const temperature = this.reported.temperature;
    if (reminder.name === "alarm-escalation" && this.state.alarm === "raised" && temperature !== undefined) {
      this.emit({ type: "alarmEscalated", temperature });
    }
  }

  #checkAlarm(temperature: number): void {
    const tooHot = temperature > this.state.maxTemperature;
    if (tooHot && this.state.alarm === "none") {
      this.emit({ type: "alarmRaised", temperature });
      this.schedule("alarm-escalation", { after: ESCALATE_AFTER });
    } else if (!tooHot && this.state.alarm !== "none") {
      this.emit({ type: "alarmCleared", temperature });
      this.cancel("alarm-escalation");
    }
  }

  /** Heat below set point − hysteresis, stop above set point + hysteresis; boost always heats, off never. */
  #decideHeating(): void {
    const { mode, setPoint, hysteresis, heatingDemand } = this.state;
    const temperature = this.reported.temperature;
    let heating = heatingDemand;
    if (mode === "off") heating = false;
    else if (mode === "boost") heating = true;
    else if (temperature !== undefined) {
      if (temperature < setPoint - hysteresis) heating = true;
      else if (temperature > setPoint + hysteresis) heating = false;
    }
    if (heating !== heatingDemand) {
      this.emit({ type: "heatingDecided", heating, temperature: temperature ?? null });
    }
    // Tell the device only what it does not do yet; withdraw a wish that no longer holds.
    const wanted = this.reported.heating === heating ? undefined : heating;
    if (this.desired.heating !== wanted) this.setDesired({ heating: wanted ?? null });
  }
}
