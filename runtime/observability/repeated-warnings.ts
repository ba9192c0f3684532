/**
 * Repeated warnings, coalesced: the first warning of a kind is logged at once, the same kind again
 * within `everyMs` only counts, and the next one logged after that carries how many were held back
 * (`repeated`). The cluster store's failures come one per shard and per attempt (256 shards
 * renewing every 667 ms: hundreds a second while Redis is away or slow); logging each with its
 * stack costs the node CPU exactly when it is short of time, and buries the one line an operator
 * needs. A kind is the error's class and message, so different failures are still each logged.
 */
import type { Clock } from "../core/clock.ts";
import type { Logger } from "./logger.ts";

/**
 * How many kinds are remembered at once (the oldest is forgotten first), so distinct messages
 * cannot grow it without bound.
 */
const MAX_KINDS = 64;

interface Kind {
  loggedAt: number;
  held: number;
}

export class RepeatedWarnings {
  readonly #kinds = new Map<string, Kind>();

  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly clock: Clock,
    private readonly everyMs = 10_000,
  ) {}

  /** Logs `error` at warn level, or counts it when its kind was logged less than `everyMs` ago. */
  warn(error: unknown): void {
    const key = kindOf(error);
    const now = this.clock.now();
    const kind = this.#kinds.get(key);
    if (kind && now - kind.loggedAt < this.everyMs) {
      kind.held++;
      return;
    }
    this.#kinds.delete(key); // re-inserted: the map's order is the order kinds were last logged
    this.#kinds.set(key, { loggedAt: now, held: 0 });
    if (this.#kinds.size > MAX_KINDS) this.#kinds.delete(this.#kinds.keys().next().value!);
    const repeated = kind?.held ?? 0;
    this.logger.warn(
      repeated > 0 ? { err: error, repeated, sinceMs: now - kind!.loggedAt } : { err: error },
      this.message,
    );
  }
}

function kindOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
