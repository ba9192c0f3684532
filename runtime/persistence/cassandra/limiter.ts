/**
 * Bounded concurrency: at most `max` tasks run at once; the rest wait in arrival order. The store
 * puts every request through one limiter, so a burst (a group commit of hundreds of twins, a
 * query merging many partitions) never floods the cluster or the driver's connections.
 */
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /** `max` must be at least 1. */
  constructor(max: number) {
    if (!(max >= 1)) throw new RangeError(`limiter needs max >= 1, got ${max}`);
    this.#max = Math.floor(max);
  }

  /** Tasks running now. */
  get running(): number {
    return this.#running;
  }

  /** Tasks waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `task` when a slot is free; settles as the task does. The slot is freed however it ends. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      // Hand the slot straight to the next waiter (the count stays); otherwise release it.
      if (next) next();
      else this.#running--;
    }
  }
}
