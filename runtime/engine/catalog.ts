/**
 * The catalog: which twins are resident on this node. A twin is activated by its first message
 * and passivated when idle longer than its type's idle timeout, or — least recently used first —
 * when the node holds more than `maxResident` twins.
 *
 * Invariant: at most one activation per twin key exists at a time. A message for a twin that is
 * passivating waits until it is gone, then starts a fresh activation.
 */

import type { TimerHandle } from "../core/clock.ts";
import { Activation, type ActivationHost } from "./activation.ts";
import { type Answer, deadlineExceeded } from "./envelope.ts";
import type { TurnOutcome, TwinMessage } from "./messages.ts";
import type { TwinType } from "./twin-type.ts";

export interface CatalogOptions {
  /** Most twins resident at once; beyond it the least recently used idle twins are passivated. */
  readonly maxResident: number;
  /** How often idle twins are looked for. */
  readonly idleSweepMs: number;
}

export class Catalog {
  readonly #resident = new Map<string, Activation>();
  /**
   * Recency order, a list through the activations (`older`/`newer`): a dispatch moves its twin to
   * the newest end by a few pointer writes (no map delete and insert per message).
   */
  #oldest: Activation | null = null;
  #newest: Activation | null = null;
  /**
   * The same activations by type, then id: what a dispatch looks its twin up by, with the strings
   * it was given (no `type/id` key built, flattened and hashed per message).
   */
  readonly #byType = new Map<string, Map<string, Activation>>();
  #leaving = 0;
  #sweep: TimerHandle | null = null;

  /** `host.discard` must call {@link Catalog.remove}. */
  constructor(
    private readonly host: ActivationHost,
    private readonly shardOf: (type: string, id: string) => number,
    private readonly options: CatalogOptions,
  ) {}

  /** Number of resident twins (including those being passivated). */
  get size(): number {
    return this.#resident.size;
  }

  /** Messages waiting in all mailboxes (read at metrics scrape time: walks every resident twin). */
  mailboxDepth(): number {
    let depth = 0;
    for (const activation of this.#resident.values()) depth += activation.queued;
    return depth;
  }

  /** The resident activation of `key`, if any. */
  resident(key: string): Activation | undefined {
    return this.#resident.get(key);
  }

  /** All resident activations, least recently used first. */
  *activations(): IterableIterator<Activation> {
    for (let activation = this.#oldest; activation; ) {
      const newer: Activation | null = activation.newer; // read first: the caller may remove it
      yield activation;
      activation = newer;
    }
  }

  /** Puts `activation` (not in the list) at the newest end. */
  #link(activation: Activation): void {
    activation.older = this.#newest;
    activation.newer = null;
    if (this.#newest) this.#newest.newer = activation;
    else this.#oldest = activation;
    this.#newest = activation;
  }

  /** Takes `activation` (in the list) out of it. */
  #unlink(activation: Activation): void {
    const { older, newer } = activation;
    if (older) older.newer = newer;
    else this.#oldest = newer;
    if (newer) newer.older = older;
    else this.#newest = older;
    activation.older = activation.newer = null;
  }

  /**
   * Delivers a message to twin `type/id`, activating it if needed. A resident twin's message is
   * queued at once (no promise of its own on the way); only a twin that is leaving waits.
   */
  dispatch<T = TurnOutcome>(
    type: TwinType,
    id: string,
    message: TwinMessage,
    answer?: Answer<T>,
  ): Promise<T> {
    const existing = this.#byType.get(type.name)?.get(id);
    if (existing && (existing.status === "passivating" || existing.status === "gone")) {
      return this.#afterLeaving(existing, type, id, message, answer);
    }
    try {
      return this.#deliver(existing, type, id, message, answer);
    } catch (error) {
      return Promise.reject(error); // a twin class whose constructor throws: a rejection, as before
    }
  }

  #deliver<T>(
    existing: Activation | undefined,
    type: TwinType,
    id: string,
    message: TwinMessage,
    answer: Answer<T> | undefined,
  ): Promise<T> {
    let activation = existing;
    if (activation) {
      // Its `lastUsed` is set by the enqueue below (with the clock read it makes anyway).
      if (activation !== this.#newest) {
        this.#unlink(activation);
        this.#link(activation);
      }
    } else {
      activation = new Activation(type, id, this.shardOf(type.name, id), this.host);
      this.#resident.set(activation.key, activation);
      this.#link(activation);
      let byId = this.#byType.get(type.name);
      if (!byId) {
        byId = new Map();
        this.#byType.set(type.name, byId);
      }
      byId.set(id, activation);
      void activation.start();
      this.#evictOverCap();
    }
    return activation.enqueue(message, answer);
  }

  /** Waits until `leaving` has left memory, then delivers (to a fresh activation, or one started meanwhile). */
  async #afterLeaving<T>(
    leaving: Activation,
    type: TwinType,
    id: string,
    message: TwinMessage,
    answer: Answer<T> | undefined,
  ): Promise<T> {
    await this.#untilGone(leaving, message);
    this.remove(leaving);
    return this.dispatch(type, id, message, answer);
  }

  /** Resolves when `leaving` is gone; refused at the message's deadline (the caller's wait starts here, not at the enqueue). */
  #untilGone(leaving: Activation, message: TwinMessage): Promise<void> {
    const { deadline } = message;
    const deadlines = this.host.deadlines;
    if (deadline === undefined || !deadlines) return leaving.gone;
    const since = this.host.clock.now();
    return new Promise((resolve, reject) => {
      const wait = deadlines.add(deadline, () =>
        reject(deadlineExceeded(leaving.key, message, deadline - since)),
      );
      void leaving.gone.then(() => {
        wait.cancel();
        resolve();
      });
    });
  }

  /** Forgets an activation that ended on its own (load failure, quarantine). */
  remove(activation: Activation): void {
    if (this.#resident.get(activation.key) !== activation) return;
    this.#resident.delete(activation.key);
    this.#unlink(activation);
    const byId = this.#byType.get(activation.type.name);
    byId?.delete(activation.id);
    if (byId?.size === 0) this.#byType.delete(activation.type.name);
  }

  #passivate(activation: Activation): boolean {
    if (!activation.passivate()) return false;
    this.#leaving++;
    void activation.gone.then(() => {
      this.#leaving--;
      this.remove(activation);
    });
    return true;
  }

  #evictOverCap(): void {
    let excess = this.#resident.size - this.#leaving - this.options.maxResident;
    if (excess <= 0) return;
    for (const activation of this.activations()) {
      if (excess <= 0) break;
      if (this.#passivate(activation)) excess--;
    }
  }

  /** Passivates every twin idle longer than its type's idle timeout. Returns how many. */
  sweepIdle(): number {
    const now = this.host.clock.now();
    let count = 0;
    for (const activation of this.#resident.values()) {
      if (now - activation.lastUsed >= activation.type.idleTimeoutMs && this.#passivate(activation)) count++;
    }
    return count;
  }

  /** Starts the periodic idle sweep. */
  start(): void {
    const tick = () => {
      this.sweepIdle();
      this.#sweep = this.host.clock.setTimeout(tick, this.options.idleSweepMs);
    };
    this.#sweep = this.host.clock.setTimeout(tick, this.options.idleSweepMs);
  }

  /**
   * Passivates every resident twin that `filter` selects (all by default), waiting for busy ones
   * to finish their turns and writes. Used on shutdown and when a shard leaves this node.
   */
  async drain(filter: (activation: Activation) => boolean = () => true, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const selected = [...this.#resident.values()].filter(filter);
      if (selected.length === 0 || performance.now() > deadline) return;
      for (const activation of selected) this.#passivate(activation);
      // Wait for those leaving, or a little while for busy ones to finish their turn. Never spin
      // on already-settled promises: busy twins need the event loop to finish.
      const leaving = selected.filter((a) => a.status === "passivating").map((a) => a.gone);
      const pause = new Promise((resolve) => setTimeout(resolve, 20));
      await (leaving.length > 0 ? Promise.race([Promise.all(leaving), pause]) : pause);
    }
  }

  /** Stops the idle sweep. */
  stop(): void {
    this.#sweep?.cancel();
    this.#sweep = null;
  }
}
