/**
 * Structured logs (pino): JSON lines in production, one object per event, with the node id on
 * every line and the trace id on lines written inside traced work. Tests and the CLI's client commands use a silent logger.
 */
import { pino } from "pino";
import { logTraceFields } from "./tracing.ts";

export type Logger = pino.Logger;

export interface LoggerOptions {
  readonly level?: pino.LevelWithSilent;
  readonly nodeId?: string;
  /** Where lines go (default stdout). */
  readonly destination?: pino.DestinationStream;
}

/** A JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const base = options.nodeId ? { node: options.nodeId } : {};
  // Every line logged inside traced work carries its trace and span ids.
  const settings: pino.LoggerOptions = { level: options.level ?? "info", base, mixin: logTraceFields };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** A logger that writes nothing. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
