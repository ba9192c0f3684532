/**
 * `doppel sim`: a fleet of simulated devices talking to Doppel over NATS, built on the device SDK
 * (`DeviceClient`) and the device models of the twin modules (default: the examples'
 * `twins/simulations.ts`). Each device syncs desired state, then reports every `1/rate` seconds
 * (a full reported-state patch each time, plus a telemetry sample unless `--no-telemetry`),
 * follows desired state and answers commands. A live progress line shows devices connected,
 * reports per second, acknowledgements and errors; Ctrl-C (or `--duration`) stops it and prints
 * the totals.
 *
 *     doppel sim --server nats://127.0.0.1:4222 --type thermostat --devices 100 --rate 2
 */
import { NatsTransport } from "../../cluster/transport/nats.ts";
import type { Transport } from "../../cluster/transport/transport.ts";
import { toMillis } from "../core/duration.ts";
import { InvalidArgument } from "../core/errors.ts";
import type { JsonObject } from "../core/json.ts";
import type { DeviceModel, SimulatedDevice } from "../sim/device-model.ts";
import { Fleet } from "../sim/fleet.ts";
import { EXAMPLE_TWINS, loadTwinModules } from "./twin-modules.ts";

export interface SimFlags {
  readonly server?: string;
  readonly type?: string[];
  readonly devices?: string;
  readonly rate?: string;
  readonly prefix?: string;
  readonly twins?: string[];
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly creds?: string;
  readonly telemetry?: boolean;
  readonly duration?: string;
  readonly json?: boolean;
}

/** A model whose devices report their whole last-known state at every step (steady load). */
export function everyStep(model: DeviceModel): DeviceModel {
  return {
    type: model.type,
    create(id, random): SimulatedDevice {
      const device = model.create(id, random);
      let known: JsonObject = {};
      const wrapped: SimulatedDevice = {
        step(dtMs, rnd) {
          const step = device.step(dtMs, rnd);
          known = { ...known, ...(step.reported ?? {}) };
          return step.telemetry ? { reported: known, telemetry: step.telemetry } : { reported: known };
        },
        onDesired: (desired) => device.onDesired(desired),
      };
      const command = device.command?.bind(device);
      if (command) wrapped.command = command;
      return wrapped;
    },
  };
}

function count(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgument(`${what} must be a positive number, got ${text}`);
  return n;
}

/** Runs the simulator until SIGINT/SIGTERM or `--duration`. */
export async function simCommand(flags: SimFlags, out: (line: string) => void): Promise<void> {
  const server = flags.server ?? process.env["DOPPEL_NATS"] ?? "nats://127.0.0.1:4222";
  const devices = Math.floor(count(flags.devices, "--devices", 10));
  const rate = count(flags.rate, "--rate", 1);
  const modules = await loadTwinModules(flags.twins ?? [EXAMPLE_TWINS]);
  const types = flags.type?.length ? flags.type : modules.devices.map((m) => m.type);
  const models = types.map((type) => {
    const model = modules.devices.find((m) => m.type === type);
    if (!model) {
      const known = modules.devices.map((m) => m.type).join(", ") || "none";
      throw new InvalidArgument(`no simulated device model for type '${type}' (models: ${known})`);
    }
    return everyStep(model);
  });
  const credentials = flags.creds
    ? { credsFile: flags.creds }
    : flags.token
      ? { token: flags.token }
      : flags.user
        ? { user: flags.user, pass: flags.password ?? "" }
        : undefined;
  const transport: Transport = await NatsTransport.connect({
    servers: server,
    ...(credentials ? { credentials } : {}),
    name: "doppel-sim",
  });
  const fleet = new Fleet({
    transport,
    models,
    devices,
    intervalMs: 1000 / rate,
    idPrefix: flags.prefix ?? "sim-",
    telemetry: flags.telemetry !== false,
  });
  const started = Date.now();
  out(
    `doppel sim: ${devices} ${types.join("/")} devices on ${server}, ${rate} report(s)/s each (${Math.round(devices * rate)}/s in all)`,
  );
  await fleet.start();
  const tty = process.stdout.isTTY === true && !flags.json;
  let last = { at: Date.now(), reports: 0, acked: 0 };
  const line = () => {
    const now = Date.now();
    const s = fleet.stats;
    const seconds = Math.max(0.001, (now - last.at) / 1000);
    const reportsPerSecond = (s.reports - last.reports) / seconds;
    const ackedPerSecond = (s.acked - last.acked) / seconds;
    last = { at: now, reports: s.reports, acked: s.acked };
    return (
      `devices ${s.connected}/${devices} connected · reports ${reportsPerSecond.toFixed(0)}/s ` +
      `(acked ${ackedPerSecond.toFixed(0)}/s) · total ${s.reports} sent, ${s.acked} acked, ` +
      `${s.telemetry} telemetry · errors ${s.errors}${s.lastError ? ` (last: ${s.lastError})` : ""}`
    );
  };
  const progress = setInterval(() => {
    const text = line();
    if (tty) process.stdout.write(`\r\x1b[2K${text}`);
    else out(text);
  }, 1000);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    if (flags.duration) setTimeout(stop, toMillis(flags.duration as never, "--duration"));
  });
  clearInterval(progress);
  if (tty) process.stdout.write("\n");
  await fleet.stop();
  await transport.close();
  const s = fleet.stats;
  const seconds = (Date.now() - started) / 1000;
  const summary = {
    devices,
    connected: s.connected,
    seconds: Math.round(seconds * 10) / 10,
    reports: s.reports,
    acked: s.acked,
    telemetry: s.telemetry,
    errors: s.errors,
    reportsPerSecond: Math.round(s.acked / seconds),
  };
  out(flags.json ? JSON.stringify(summary) : `stopped: ${JSON.stringify(summary)}`);
}
