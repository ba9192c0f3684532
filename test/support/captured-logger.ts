/** A logger whose lines a test reads back (parsed), at `level` and above. */
import type { LevelWithSilent } from "pino";
import { createLogger, type Logger } from "../../runtime/observability/logger.ts";

export interface LoggedLine {
  readonly level: number;
  readonly msg: string;
  readonly err?: string;
  readonly [field: string]: unknown;
}

export function capturedLogger(level: LevelWithSilent = "warn"): { logger: Logger; lines: LoggedLine[] } {
  const lines: LoggedLine[] = [];
  const logger = createLogger({
    level,
    destination: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}
