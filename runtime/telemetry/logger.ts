/**
 * Structured logs (pino): JSON lines in production, one object per event, with the node id on
 * every line. Tests and the CLI's client commands use a silent logger.
 */
import { pino } from "pino";

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
  const settings: pino.LoggerOptions = { level: options.level ?? "info", base };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** A logger that writes nothing. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
