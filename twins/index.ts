/** The example twins that `npm start` runs and the README shows. */
import { Pump } from "./pump.ts";
import { Thermostat } from "./thermostat.ts";

export { Pump } from "./pump.ts";
export { exampleDevices, pumpDevice, thermostatDevice } from "./simulations.ts";
export { Thermostat } from "./thermostat.ts";

/** Every example twin class. */
export const exampleTwins = [Thermostat, Pump] as const;
