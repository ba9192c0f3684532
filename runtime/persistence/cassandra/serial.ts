/**
 * Tasks run one at a time per key, in the order they were queued (a failed task does not stop
 * the next). Holds only the keys with a task queued or running, so it stays bounded by the work
 * in flight.
 */
export class SerialQueues {
  readonly #chains = new Map<string, Promise<void>>();

  /** Runs `task` after every earlier task of `key` has settled; settles as `task` does. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(key);
    const run = previous ? previous.then(task) : task();
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(key, tail);
    void tail.then(() => {
      if (this.#chains.get(key) === tail) this.#chains.delete(key);
    });
    return run;
  }
}
