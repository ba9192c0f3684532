/** Small twins that exercise one engine behaviour each. */
import { type JsonObject, Twin, z } from "doppel";

export interface CounterState {
  readonly count: number;
  readonly log: readonly string[];
}
export type CounterEvent = { readonly type: "added"; readonly by: number; readonly tag: string };

/**
 * A counter whose `add` command yields to the event loop in the middle of its turn, so
 * overlapping turns would interleave and be caught by the `inTurn` guard.
 */
export class Counter extends Twin<CounterState, CounterEvent> {
  static readonly type = "counter";
  static readonly commands = {
    add: z.object({ by: z.number().int(), tag: z.string().default("") }),
    fail: z.object({ after: z.number().int().min(0) }),
    read: z.object({}),
  };
  static readonly options = { snapshotEvery: 5 };
  static active = 0;
  static maxConcurrent = 0;
  static activations = 0;
  static passivations = 0;

  initialState(): CounterState {
    return { count: 0, log: [] };
  }

  apply(state: CounterState, event: CounterEvent): CounterState {
    return { count: state.count + event.by, log: [...state.log, event.tag].slice(-50) };
  }

  override onActivate(): void {
    Counter.activations++;
  }

  override onPassivate(): void {
    Counter.passivations++;
  }

  async add({ by, tag }: { by: number; tag: string }) {
    Counter.active++;
    Counter.maxConcurrent = Math.max(Counter.maxConcurrent, Counter.active);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      this.emit({ type: "added", by, tag });
      return { count: this.state.count };
    } finally {
      Counter.active--;
    }
  }

  /** Emits `after` events, then throws: none of them may survive. */
  fail({ after }: { after: number }): never {
    for (let i = 0; i < after; i++) this.emit({ type: "added", by: 1000, tag: "doomed" });
    throw new Error("deliberate failure");
  }

  read() {
    return { count: this.state.count };
  }

  static reset(): void {
    Counter.active = 0;
    Counter.maxConcurrent = 0;
    Counter.activations = 0;
    Counter.passivations = 0;
  }
}

/** Twins that call each other, to test call chains. */
export class Caller extends Twin<{ readonly calls: number }, { readonly type: "called" }> {
  static readonly type = "caller";
  static readonly commands = {
    relay: z.object({ path: z.array(z.string()).max(10) }),
    echo: z.object({ text: z.string() }),
  };

  initialState() {
    return { calls: 0 };
  }

  apply(state: { readonly calls: number }) {
    return { calls: state.calls + 1 };
  }

  /** Calls the first twin of `path` with the rest of it; the last one answers. */
  async relay({ path }: { path: string[] }): Promise<JsonObject> {
    this.emit({ type: "called" });
    const [next, ...rest] = path;
    if (next === undefined) return { reached: this.id };
    const answer = await this.call(Caller, next, "relay", { path: rest });
    return { via: this.id, answer };
  }

  echo({ text }: { text: string }) {
    return { text };
  }
}
