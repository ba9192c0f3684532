/**
 * The manual clock of the cluster unit tests: the runtime's {@link ManualClock} (`advance` fires
 * due timers in order, `jump` moves time without running them, as for a paused process), starting
 * at 1 000 000 and letting promises settle for 10 macrotask turns between timers — lease and
 * membership code chains more awaits per step than a twin turn.
 */
import { ManualClock, settle as settleRounds } from "../../runtime/core/clock.ts";

const ROUNDS = 10;

/** Lets pending promise chains run. */
export function settle(rounds = ROUNDS): Promise<void> {
  return settleRounds(rounds);
}

export class FakeClock extends ManualClock {
  constructor(start = 1_000_000) {
    super(start, { settleRounds: ROUNDS });
  }
}
