/**
 * Whether an edge's leaf link is up, from what its per-tick request to the cloud's JetStream got.
 *
 * - An answer: up.
 * - No responders (the hub's JetStream has no route: the leaf connection is gone, NATS says so at
 *   once): down.
 * - A timeout: the request went out over a live leaf connection and no answer came in time. That
 *   is a busy hub or link as often as a lost one, so the link stays as it was until
 *   {@link TIMEOUTS_BEFORE_DOWN} ticks in a row time out (a silent partition, where the TCP
 *   connection is not closed, is then seen as down without waiting for nats-server's leaf pings).
 *
 * One tick that timed out under load therefore no longer flips `doppel_edge_link_up` to 0 and back.
 */
import { NoRespondersError, RequestError, TimeoutError } from "@nats-io/nats-core";

/** Consecutive timed-out ticks after which a link that was up counts as down. */
export const TIMEOUTS_BEFORE_DOWN = 3;

/** What one tick's request to the cloud got. */
export type LinkProbe = "answered" | "timeout" | "unreachable";

/** The probe a request's error means: a timeout, or anything else (no responders, a closed connection). */
export function probeOfError(error: unknown): LinkProbe {
  return error instanceof TimeoutError ? "timeout" : "unreachable";
}

/**
 * Whether a request's error says only that no answer came (yet): no responders (no route to the
 * cloud, or no cloud node listening) or a timeout, as nats.js types them (`nc.request` gives a
 * `TimeoutError`, or a `RequestError` whose cause is a `NoRespondersError`). A closed connection,
 * a refusal or anything else is not.
 */
export function isNoAnswer(error: unknown): boolean {
  return (
    error instanceof TimeoutError ||
    error instanceof NoRespondersError ||
    (error instanceof RequestError && error.isNoResponders())
  );
}

export class LinkState {
  #up = false;
  #timeouts = 0;

  get up(): boolean {
    return this.#up;
  }

  /** Timed-out ticks in a row while the link still counts as up. */
  get timeouts(): number {
    return this.#timeouts;
  }

  /** Takes one tick's probe and returns whether the link is up now. */
  observe(probe: LinkProbe): boolean {
    if (probe === "answered") {
      this.#up = true;
      this.#timeouts = 0;
    } else if (probe === "timeout" && this.#up && ++this.#timeouts < TIMEOUTS_BEFORE_DOWN) {
      // Still up: not enough timeouts in a row yet.
    } else {
      this.#up = false;
      this.#timeouts = 0;
    }
    return this.#up;
  }
}
