/**
 * Admission control: a node-wide bound on the work in flight per class (gRPC calls, device
 * reports, calls from other nodes), with per-client fairness, checked *before* the work is queued
 * anywhere (mailbox, store, socket). Work over the bound is refused at once with a retry hint,
 * instead of waiting in a queue until its deadline passes.
 *
 * A unit of work is admitted when all of these hold, else refused:
 * - the class has fewer than `maxInFlight` units in flight;
 * - its client (gRPC peer or principal, device, calling node) has fewer than `maxInFlightPerClient`;
 * - when the class is congested (at least half of `maxInFlight` in use), the client holds less
 *   than its fair share, `ceil(maxInFlight / clients with work in flight)`: one busy client cannot
 *   starve the others by taking the whole bound.
 *
 * The hint (`retryAfterMs`) is how long a unit of this class has recently stayed in flight (a
 * moving average of permit hold times on the node's clock), clamped to 10 ms … 10 s: about when a
 * slot frees. Memory is bounded: a client is tracked only while it has work in flight.
 */
import type { Clock } from "./clock.ts";
import { ResourceExhausted } from "./errors.ts";

/**
 * The classes of work admitted separately: unary gRPC calls and finite streams, device messages,
 * calls from other nodes, and open `WatchTwin` streams (long-lived: a permit is held until the
 * stream ends, so watchers never take the slots of short calls).
 */
export type WorkClass = "grpc" | "device" | "node" | "watch";

/** The bound of one class. */
export interface ClassLimits {
  /** Most units of the class in flight on the node at once. */
  readonly maxInFlight: number;
  /** Most units of one client in flight at once. */
  readonly maxInFlightPerClient: number;
}

/** The bounds of every class. */
export type AdmissionLimits = Readonly<Record<WorkClass, ClassLimits>>;

/** Defaults: generous for a 2-core node, small enough that queues stay short under overload. */
export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  grpc: { maxInFlight: 1024, maxInFlightPerClient: 256 },
  device: { maxInFlight: 4096, maxInFlightPerClient: 16 },
  node: { maxInFlight: 2048, maxInFlightPerClient: 1024 },
  watch: { maxInFlight: 1024, maxInFlightPerClient: 64 },
};

/** Shortest and longest retry hint given. */
export const MIN_RETRY_AFTER_MS = 10;
export const MAX_RETRY_AFTER_MS = 10_000;
/** Weight of the newest hold time in the moving average. */
const EWMA_WEIGHT = 0.1;

/** Admitted work: release it exactly when the work is done (further calls do nothing). */
export interface Permit {
  release(): void;
}

/** Why a unit was refused. */
export type RefusalReason = "node" | "client" | "fair-share";

/** The outcome of {@link Admission.tryAdmit}. */
export type Admitted =
  | { readonly ok: true; readonly permit: Permit }
  | {
      readonly ok: false;
      readonly reason: RefusalReason;
      readonly retryAfterMs: number;
      /** The bound that was reached (node-wide, per client, or the client's fair share). */
      readonly limit: number;
    };

/** Counters and gauges of one class (metrics). */
export interface ClassStats {
  admitted: number;
  refused: number;
  inFlight: number;
  /** Clients with work in flight now. */
  clients: number;
}

class ClassState {
  readonly stats: ClassStats = { admitted: 0, refused: 0, inFlight: 0, clients: 0 };
  readonly perClient = new Map<string, number>();
  /** Moving average of how long a permit is held, ms (undefined until one was released). */
  averageHoldMs: number | undefined;

  constructor(readonly limits: ClassLimits) {}
}

/** Thrown when work is refused: RESOURCE_EXHAUSTED, details `{ class, reason, retryAfterMs, limit }`. */
export class Throttled extends ResourceExhausted {
  constructor(
    readonly workClass: WorkClass,
    readonly reason: RefusalReason,
    readonly retryAfterMs: number,
    limit: number,
  ) {
    const what =
      reason === "node"
        ? `the node has ${limit} ${workClass} requests in flight`
        : reason === "client"
          ? `this client has ${limit} ${workClass} requests in flight`
          : `the node is busy and this client has its fair share (${limit}) of ${workClass} requests in flight`;
    super(`overloaded: ${what}; retry in ${retryAfterMs} ms`, {
      class: workClass,
      reason,
      retryAfterMs,
      limit,
    });
  }
}

function checkLimits(name: string, limits: ClassLimits): void {
  for (const [field, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`admission ${name}.${field} must be a positive integer, got ${value}`);
    }
  }
}

/** The node's admission control (one per node, shared by its entry points). */
export class Admission {
  readonly #classes: Record<WorkClass, ClassState>;

  constructor(
    private readonly clock: Pick<Clock, "now">,
    limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS,
  ) {
    for (const [name, value] of Object.entries(limits)) checkLimits(name, value);
    this.#classes = {
      grpc: new ClassState(limits.grpc),
      device: new ClassState(limits.device),
      node: new ClassState(limits.node),
      watch: new ClassState(limits.watch),
    };
  }

  /** The counters of `workClass`. */
  stats(workClass: WorkClass): Readonly<ClassStats> {
    return this.#classes[workClass].stats;
  }

  /** The retry hint for `workClass` now, ms. */
  retryAfterMs(workClass: WorkClass): number {
    const average = this.#classes[workClass].averageHoldMs ?? MIN_RETRY_AFTER_MS;
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.ceil(average)));
  }

  /** Admits one unit of `workClass` for `client`, or says why not. Never throws. */
  tryAdmit(workClass: WorkClass, client: string): Admitted {
    const state = this.#classes[workClass];
    const { maxInFlight, maxInFlightPerClient } = state.limits;
    const held = state.perClient.get(client) ?? 0;
    let refusal: { reason: RefusalReason; limit: number } | undefined;
    if (state.stats.inFlight >= maxInFlight) refusal = { reason: "node", limit: maxInFlight };
    else if (held >= maxInFlightPerClient) refusal = { reason: "client", limit: maxInFlightPerClient };
    else if (state.stats.inFlight * 2 >= maxInFlight) {
      const clients = state.perClient.size + (held === 0 ? 1 : 0);
      const share = Math.ceil(maxInFlight / clients);
      if (held >= share) refusal = { reason: "fair-share", limit: share };
    }
    if (refusal !== undefined) {
      state.stats.refused++;
      return { ok: false, ...refusal, retryAfterMs: this.retryAfterMs(workClass) };
    }
    state.stats.admitted++;
    state.stats.inFlight++;
    state.perClient.set(client, held + 1);
    state.stats.clients = state.perClient.size;
    const started = this.clock.now();
    let released = false;
    return {
      ok: true,
      permit: {
        release: () => {
          if (released) return;
          released = true;
          state.stats.inFlight--;
          const left = (state.perClient.get(client) ?? 1) - 1;
          if (left > 0) state.perClient.set(client, left);
          else state.perClient.delete(client);
          state.stats.clients = state.perClient.size;
          const hold = Math.max(0, this.clock.now() - started);
          state.averageHoldMs =
            state.averageHoldMs === undefined
              ? hold
              : state.averageHoldMs + EWMA_WEIGHT * (hold - state.averageHoldMs);
        },
      },
    };
  }

  /** Like {@link tryAdmit}, but a refusal throws {@link Throttled} (RESOURCE_EXHAUSTED). */
  admit(workClass: WorkClass, client: string): Permit {
    const admitted = this.tryAdmit(workClass, client);
    if (admitted.ok) return admitted.permit;
    throw new Throttled(workClass, admitted.reason, admitted.retryAfterMs, admitted.limit);
  }

  /** Runs `work` under a permit of `workClass` for `client` (refused: throws {@link Throttled}). */
  async run<T>(workClass: WorkClass, client: string, work: () => Promise<T> | T): Promise<T> {
    const permit = this.admit(workClass, client);
    try {
      return await work();
    } finally {
      permit.release();
    }
  }
}
