/**
 * Change notifications: after every persisted batch, the node publishes what changed. Watchers
 * (`WatchTwin`), the desired-state push to devices, and metrics subscribe here.
 */
import type { ChangeListener, TwinChange } from "../core/records.ts";

export class ChangeFeed {
  readonly #byKey = new Map<string, Set<ChangeListener>>();
  readonly #all = new Set<ChangeListener>();

  /** Listens to changes of twin `key` (`type/id`), or of every twin when `key` is `"*"`. Returns the unsubscribe. */
  subscribe(key: string, listener: ChangeListener): () => void {
    if (key === "*") {
      this.#all.add(listener);
      return () => this.#all.delete(listener);
    }
    let listeners = this.#byKey.get(key);
    if (!listeners) {
      listeners = new Set();
      this.#byKey.set(key, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#byKey.get(key) === listeners) this.#byKey.delete(key);
    };
  }

  /** True when someone listens to `key` or to everything (to skip work nobody needs). */
  watched(key: string): boolean {
    return this.#all.size > 0 || this.#byKey.has(key);
  }

  /** Delivers a change. A throwing listener is isolated from the others. */
  publish(key: string, change: TwinChange): void {
    const listeners = this.#byKey.get(key);
    if (listeners) for (const listener of listeners) safely(listener, change);
    for (const listener of this.#all) safely(listener, change);
  }
}

function safely(listener: ChangeListener, change: TwinChange): void {
  try {
    listener(change);
  } catch {
    // A watcher's failure is its own; it must not stop the others or the twin.
  }
}
