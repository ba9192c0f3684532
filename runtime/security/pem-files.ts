/** PEM files named by the configuration (certificates, keys, CAs), read with errors that name the setting. */
import { readFileSync } from "node:fs";
import { InvalidArgument } from "../core/errors.ts";

/** Reads a PEM file; `InvalidArgument` names the setting and the file when it cannot. */
export function readPem(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new InvalidArgument(`${setting}: cannot read ${path}: ${(error as Error).message}`);
  }
}
