/**
 * Simulated devices for the example twins: what `npm start` and `doppel sim` run.
 */

import type { JsonObject } from "doppel";
import type { DeviceModel, SimulatedDevice } from "doppel/node";

/** A room heated by a heater the twin switches through desired state; it cools toward 12 °C. */
export const thermostatDevice: DeviceModel = {
  type: "thermostat",
  create(_id, random): SimulatedDevice {
    let temperature = 16 + random() * 8;
    let heating = false;
    let lastReported = Number.NaN;
    return {
      step(dtMs, rnd) {
        const hours = dtMs / 3_600_000;
        // Heating adds ~6 °C/h; the room loses heat toward 12 °C; plus a little noise. (Sped up ×20 for a lively demo.)
        const drift = (heating ? 6 : 0) - (temperature - 12) * 0.3;
        temperature += drift * hours * 20 + (rnd() - 0.5) * 0.1;
        temperature = Math.round(temperature * 100) / 100;
        const reported: JsonObject =
          Math.abs(temperature - lastReported) >= 0.2 || Number.isNaN(lastReported)
            ? { temperature, heating }
            : {};
        if ("temperature" in reported) lastReported = temperature;
        return { reported, telemetry: { temperature, heating: heating ? 1 : 0 } };
      },
      onDesired(desired) {
        if (typeof desired["heating"] === "boolean") heating = desired["heating"];
      },
    };
  },
};

/** A pump that follows desired running/rpm; pressure grows with speed, vibration wanders, hours accrue. */
export const pumpDevice: DeviceModel = {
  type: "pump",
  create(_id, random): SimulatedDevice {
    let running = false;
    let rpm = 0;
    let targetRpm = 0;
    let runHours = Math.round(random() * 400);
    let vibration = 1 + random();
    let identifying = 0;
    return {
      step(dtMs, rnd) {
        if (running) {
          rpm += (targetRpm - rpm) * 0.5;
          runHours += (dtMs / 3_600_000) * 60;
        } else {
          rpm *= 0.3;
        }
        rpm = Math.round(rpm);
        vibration = Math.max(0.5, Math.min(9, vibration + (rnd() - 0.5) * 0.3));
        const pressureBar = Math.round(((rpm / 1450) ** 2 * 4.5 + rnd() * 0.2) * 100) / 100;
        const flowLpm = Math.round(rpm * 0.21 * (0.95 + rnd() * 0.1));
        return {
          reported: {
            running,
            rpm,
            pressureBar,
            flowLpm,
            vibrationMm: Math.round(vibration * 100) / 100,
            runHours: Math.round(runHours * 10) / 10,
          },
          telemetry: { rpm, pressureBar, flowLpm },
        };
      },
      onDesired(desired) {
        if (typeof desired["running"] === "boolean") running = desired["running"];
        if (typeof desired["rpm"] === "number") targetRpm = desired["rpm"];
        if (!running) targetRpm = 0;
      },
      command(name, args) {
        if (name !== "identify") throw new Error(`unknown command '${name}'`);
        identifying = typeof args["seconds"] === "number" ? args["seconds"] : 5;
        return { blinking: true, seconds: identifying, rpm };
      },
    };
  },
};

/** Every example device model. */
export const exampleDevices: readonly DeviceModel[] = [thermostatDevice, pumpDevice];
