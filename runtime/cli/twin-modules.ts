/**
 * Loading twin modules: a module's exports that are twin classes are registered, and those that
 * are device models feed the demo fleet. Twin modules may be TypeScript: the compiled CLI then
 * registers tsx (once, only when such a module is given) to load them.
 */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { InvalidArgument } from "../core/errors.ts";
import { Twin, type TwinClass } from "../core/twin.ts";
import type { DeviceModel } from "../sim/device-model.ts";

/** Whether this module runs compiled (dist/, `.js`) or from source under tsx (`.ts`). */
const COMPILED = import.meta.url.endsWith(".js");

/** The example twins shipped with Doppel (used when no module is given). */
export const EXAMPLE_TWINS = resolve(
  dirname(fileURLToPath(import.meta.url)),
  `../../twins/index.${COMPILED ? "js" : "ts"}`,
);

let typescriptLoader: Promise<void> | undefined;

/** Lets the compiled CLI import TypeScript twin modules (tsx's loader, registered once). */
function loadTypeScript(): Promise<void> {
  typescriptLoader ??= import("tsx/esm/api").then(({ register }) => {
    register();
  });
  return typescriptLoader;
}

export interface TwinModules {
  readonly twins: TwinClass[];
  readonly devices: DeviceModel[];
}

function isTwinClass(value: unknown): value is TwinClass {
  return (
    typeof value === "function" &&
    value.prototype instanceof Twin &&
    typeof (value as { type?: unknown }).type === "string"
  );
}

function isDeviceModel(value: unknown): value is DeviceModel {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as DeviceModel).type === "string" &&
    typeof (value as DeviceModel).create === "function"
  );
}

/** Imports each module and collects its twin classes and device models (each once). */
export async function loadTwinModules(paths: readonly string[]): Promise<TwinModules> {
  const twins = new Set<TwinClass>();
  const devices = new Set<DeviceModel>();
  for (const path of paths) {
    const file = resolve(path);
    if (!existsSync(file)) throw new InvalidArgument(`twin module ${path} does not exist`);
    let module: Record<string, unknown>;
    if (COMPILED && /\.[cm]?tsx?$/.test(file)) await loadTypeScript();
    try {
      module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (error) {
      throw new InvalidArgument(`twin module ${path} failed to load: ${(error as Error).message}`);
    }
    const before = twins.size;
    for (const value of Object.values(module)) {
      const candidates = Array.isArray(value) ? value : [value];
      for (const candidate of candidates) {
        if (isTwinClass(candidate)) twins.add(candidate);
        else if (isDeviceModel(candidate)) devices.add(candidate);
      }
    }
    if (twins.size === before) throw new InvalidArgument(`twin module ${path} exports no twin class`);
  }
  return { twins: [...twins], devices: [...devices] };
}
