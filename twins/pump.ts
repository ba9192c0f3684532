/**
 * Pump: the richer example twin — several commands, derived state, business rules.
 *
 * The device reports speed, pressure, flow, vibration and run hours. The twin derives the pump's
 * status, a health grade from vibration (ISO 10816-style bands) and its efficiency; it stops the
 * pump on a fault (over-pressure or severe vibration) and refuses to start it again until the
 * fault is cleared; it tracks maintenance by run hours and by a scheduled date (a reminder). It
 * talks to the pump itself: `identify` needs the pump online now, `calibrate` waits for it (a
 * queued device command, delivered when the pump is next heard from, or expired after an hour).
 */
import { type DeviceCommandResult, type Duration, FailedPrecondition, type Reminder, Twin, z } from "doppel";

export const PumpReported = z
  .object({
    running: z.boolean(),
    rpm: z.number().min(0).max(10_000),
    pressureBar: z.number().min(0).max(100),
    flowLpm: z.number().min(0).max(100_000),
    vibrationMm: z.number().min(0).max(100),
    runHours: z.number().min(0),
  })
  .partial();
export type PumpReported = z.infer<typeof PumpReported>;

export type PumpStatus = "stopped" | "starting" | "running" | "stopping" | "fault";
export type PumpHealth = "good" | "watch" | "critical";
export type FaultCode = "over-pressure" | "vibration";

export interface PumpFault {
  readonly code: FaultCode;
  readonly value: number;
  readonly at: number;
}

/** The pressure sensor's calibration, as the twin last asked the pump for it. */
export interface PumpCalibration {
  readonly offsetBar: number;
  /** `pending`: queued for the pump; `applied`: the pump confirmed it; `failed`: refused or expired. */
  readonly status: "pending" | "applied" | "failed";
  /** The queued command's id while pending; why it failed. */
  readonly detail?: string;
}

export interface PumpState {
  readonly status: PumpStatus;
  readonly targetRpm: number;
  readonly activeFault: PumpFault | null;
  /** The last five faults, newest last. */
  readonly faults: readonly PumpFault[];
  readonly health: PumpHealth;
  /** Litres per minute per 1000 rpm, from the last report with flow and speed. */
  readonly efficiency: number | null;
  readonly starts: number;
  /** Run hours at which maintenance falls due. */
  readonly maintenanceDueAtHours: number;
  readonly maintenanceDue: boolean;
  readonly maintenanceScheduledFor: number | null;
  readonly lastTechnician: string | null;
  readonly calibration: PumpCalibration | null;
}

export type PumpEvent =
  | { readonly type: "startRequested"; readonly rpm: number }
  | { readonly type: "stopRequested" }
  | { readonly type: "speedRequested"; readonly rpm: number }
  | { readonly type: "statusChanged"; readonly status: PumpStatus }
  | { readonly type: "faultDetected"; readonly fault: PumpFault }
  | { readonly type: "faultCleared"; readonly note: string }
  | { readonly type: "healthChanged"; readonly health: PumpHealth }
  | { readonly type: "efficiencyMeasured"; readonly efficiency: number }
  | { readonly type: "maintenanceScheduled"; readonly at: number }
  | { readonly type: "maintenanceDue"; readonly reason: "hours" | "date" }
  | { readonly type: "maintenanceCompleted"; readonly technician: string; readonly nextDueAtHours: number }
  | { readonly type: "calibrationQueued"; readonly offsetBar: number; readonly id: string }
  | { readonly type: "calibrated"; readonly offsetBar: number }
  | { readonly type: "calibrationFailed"; readonly offsetBar: number; readonly reason: string };

/** Pressure above which the pump is stopped. */
export const MAX_PRESSURE_BAR = 8;
/** Vibration bands (mm/s): below `watch` is good, from `critical` on the pump is stopped. */
export const VIBRATION = { watch: 2.8, critical: 7.1 } as const;
/** Run hours between services. */
export const SERVICE_INTERVAL_HOURS = 500;

function healthOf(vibration: number): PumpHealth {
  if (vibration >= VIBRATION.critical) return "critical";
  return vibration >= VIBRATION.watch ? "watch" : "good";
}

export class Pump extends Twin<PumpState, PumpEvent, PumpReported> {
  static readonly type = "pump";
  static readonly reported = PumpReported;
  static readonly desired = z.object({ running: z.boolean(), rpm: z.number().min(0).max(10_000) }).partial();
  static readonly commands = {
    start: z.object({ rpm: z.number().int().min(300).max(3600).default(1450) }),
    stop: z.object({}),
    setSpeed: z.object({ rpm: z.number().int().min(300).max(3600) }),
    clearFault: z.object({ note: z.string().min(1).max(200) }),
    scheduleMaintenance: z.object({ at: z.iso.datetime() }),
    completeMaintenance: z.object({ technician: z.string().min(1).max(100) }),
    /** Asks the pump itself to flash its status light; returns the device's answer (a device command). */
    identify: z.object({ seconds: z.number().int().min(1).max(60).default(5) }),
    /** Sends the pump a pressure-sensor offset; queued for up to `waitFor` (1 h) while the pump is offline. */
    calibrate: z.object({
      offsetBar: z.number().min(-1).max(1),
      waitFor: z
        .string()
        .regex(/^\d{1,6}(s|m|h)$/)
        .default("1h"),
    }),
  };

  initialState(): PumpState {
    return {
      status: "stopped",
      targetRpm: 0,
      activeFault: null,
      faults: [],
      health: "good",
      efficiency: null,
      starts: 0,
      maintenanceDueAtHours: SERVICE_INTERVAL_HOURS,
      maintenanceDue: false,
      maintenanceScheduledFor: null,
      lastTechnician: null,
      calibration: null,
    };
  }

  apply(state: PumpState, event: PumpEvent): PumpState {
    switch (event.type) {
      case "startRequested":
        return { ...state, status: "starting", targetRpm: event.rpm, starts: state.starts + 1 };
      case "stopRequested":
        return { ...state, status: "stopping", targetRpm: 0 };
      case "speedRequested":
        return { ...state, targetRpm: event.rpm };
      case "statusChanged":
        return { ...state, status: event.status };
      case "faultDetected":
        return {
          ...state,
          status: "fault",
          targetRpm: 0,
          activeFault: event.fault,
          faults: [...state.faults, event.fault].slice(-5),
        };
      case "faultCleared":
        return { ...state, status: "stopped", activeFault: null };
      case "healthChanged":
        return { ...state, health: event.health };
      case "efficiencyMeasured":
        return { ...state, efficiency: event.efficiency };
      case "maintenanceScheduled":
        return { ...state, maintenanceScheduledFor: event.at };
      case "maintenanceDue":
        return { ...state, maintenanceDue: true };
      case "maintenanceCompleted":
        return {
          ...state,
          maintenanceDue: false,
          maintenanceScheduledFor: null,
          maintenanceDueAtHours: event.nextDueAtHours,
          lastTechnician: event.technician,
        };
      case "calibrationQueued":
        return { ...state, calibration: { offsetBar: event.offsetBar, status: "pending", detail: event.id } };
      case "calibrated":
        return { ...state, calibration: { offsetBar: event.offsetBar, status: "applied" } };
      case "calibrationFailed":
        return {
          ...state,
          calibration: { offsetBar: event.offsetBar, status: "failed", detail: event.reason },
        };
    }
  }

  start({ rpm }: { rpm: number }) {
    const fault = this.state.activeFault;
    if (fault)
      throw new FailedPrecondition(`pump has an active ${fault.code} fault; clear it before starting`);
    if (this.state.status === "running" || this.state.status === "starting") {
      throw new FailedPrecondition(`pump is already ${this.state.status}`);
    }
    this.emit({ type: "startRequested", rpm });
    this.setDesired({ running: true, rpm });
    return { status: this.state.status, rpm };
  }

  stop() {
    if (this.state.status === "stopped" || this.state.status === "fault")
      return { status: this.state.status };
    this.emit({ type: "stopRequested" });
    this.setDesired({ running: false, rpm: null });
    return { status: this.state.status };
  }

  setSpeed({ rpm }: { rpm: number }) {
    if (this.state.status !== "running" && this.state.status !== "starting") {
      throw new FailedPrecondition(`cannot set speed while the pump is ${this.state.status}`);
    }
    this.emit({ type: "speedRequested", rpm });
    this.setDesired({ rpm });
    return { rpm };
  }

  clearFault({ note }: { note: string }) {
    const fault = this.state.activeFault;
    if (!fault) throw new FailedPrecondition("pump has no active fault");
    const { pressureBar = 0, vibrationMm = 0 } = this.reported;
    if (pressureBar > MAX_PRESSURE_BAR || vibrationMm >= VIBRATION.critical) {
      throw new FailedPrecondition("the fault condition persists; the pump cannot be released yet");
    }
    this.emit({ type: "faultCleared", note });
    return { status: this.state.status };
  }

  scheduleMaintenance({ at }: { at: string }) {
    const when = Date.parse(at);
    if (when <= this.now.getTime())
      throw new FailedPrecondition("maintenance must be scheduled in the future");
    this.emit({ type: "maintenanceScheduled", at: when });
    this.schedule("maintenance", { at: when });
    return { scheduledFor: new Date(when).toISOString() };
  }

  completeMaintenance({ technician }: { technician: string }) {
    const hours = this.reported.runHours ?? 0;
    const nextDueAtHours = hours + SERVICE_INTERVAL_HOURS;
    this.emit({ type: "maintenanceCompleted", technician, nextDueAtHours });
    this.cancel("maintenance");
    return { nextDueAtHours };
  }

  /** A command that reaches the device: fails with UNAVAILABLE when the pump is offline. */
  async identify({ seconds }: { seconds: number }) {
    return await this.sendToDevice("identify", { seconds }, { timeout: "5s" });
  }

  /**
   * A command that waits for the pump: answered at once when the pump is online, else queued for
   * `waitFor` and sent when the pump is next heard from; the outcome comes to `onDeviceCommandResult`.
   */
  async calibrate({ offsetBar, waitFor }: { offsetBar: number; waitFor: string }) {
    const queueFor = waitFor as Duration;
    const sent = await this.sendToDevice("calibrate", { offsetBar }, { timeout: "5s", queueFor });
    if (sent.status === "queued") {
      this.emit({ type: "calibrationQueued", offsetBar, id: sent.id });
      return { status: sent.status, id: sent.id, expiresAt: sent.expiresAt.toISOString() };
    }
    this.emit({ type: "calibrated", offsetBar });
    return { status: sent.status, id: sent.id, result: sent.result };
  }

  /** The outcome of a queued `calibrate`: the pump's answer, its error, or expiry. */
  override onDeviceCommandResult(result: DeviceCommandResult): void {
    if (result.command !== "calibrate") return;
    const offsetBar = Number(result.args["offsetBar"]);
    if (result.outcome === "answered") this.emit({ type: "calibrated", offsetBar });
    else this.emit({ type: "calibrationFailed", offsetBar, reason: result.error?.message ?? result.outcome });
  }

  override onReported(patch: PumpReported): void {
    this.#detectFault();
    this.#trackStatus(patch);
    if (patch.vibrationMm !== undefined) {
      const health = healthOf(patch.vibrationMm);
      if (health !== this.state.health) this.emit({ type: "healthChanged", health });
    }
    const { flowLpm, rpm } = this.reported;
    if ((patch.flowLpm !== undefined || patch.rpm !== undefined) && flowLpm !== undefined && rpm) {
      const efficiency = Math.round((flowLpm / rpm) * 1000 * 10) / 10;
      const last = this.state.efficiency;
      if (last === null || Math.abs(efficiency - last) / Math.max(last, 1e-9) > 0.05) {
        this.emit({ type: "efficiencyMeasured", efficiency });
      }
    }
    const hours = patch.runHours;
    if (hours !== undefined && hours >= this.state.maintenanceDueAtHours && !this.state.maintenanceDue) {
      this.emit({ type: "maintenanceDue", reason: "hours" });
    }
  }

  override onReminder(reminder: Reminder): void {
    if (reminder.name === "maintenance" && !this.state.maintenanceDue) {
      this.emit({ type: "maintenanceDue", reason: "date" });
    }
  }

  #detectFault(): void {
    if (this.state.activeFault) return;
    const { pressureBar, vibrationMm } = this.reported;
    let fault: PumpFault | null = null;
    const at = this.now.getTime();
    if (pressureBar !== undefined && pressureBar > MAX_PRESSURE_BAR)
      fault = { code: "over-pressure", value: pressureBar, at };
    else if (vibrationMm !== undefined && vibrationMm >= VIBRATION.critical)
      fault = { code: "vibration", value: vibrationMm, at };
    if (!fault) return;
    this.emit({ type: "faultDetected", fault });
    this.setDesired({ running: false, rpm: null });
  }

  #trackStatus(patch: PumpReported): void {
    if (patch.running === undefined || this.state.status === "fault") return;
    const status: PumpStatus = patch.running ? "running" : "stopped";
    if (status !== this.state.status) this.emit({ type: "statusChanged", status });
  }
}
