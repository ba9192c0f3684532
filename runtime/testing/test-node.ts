/**
 * The test kit: a whole node in memory with a manual clock, for testing twins in milliseconds.
 *
 * ```ts
 * const test = await TestNode.start({ twins: [Thermostat] });
 * const t1 = test.twin(Thermostat, "t1");
 * await t1.report({ temperature: 35 });
 * await test.advance("5m");               // reminders fire
 * expect((await t1.get()).state.alarm).toBe("escalated");
 * await test.restart();                   // same store, new node: state is replayed
 * await test.stop();
 * ```
 */

import { ManualClock, settle } from "../core/clock.ts";
import { type Duration, toMillis } from "../core/duration.ts";
import type { JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import type { EventRecord, TwinView } from "../core/records.ts";
import type { CommandInput, CommandName, CommandResult, TwinClass } from "../core/twin.ts";
import type { ReportResult, TwinApi } from "../core/twin-api.ts";
import { DoppelNode } from "../node/node.ts";
import type { NodeConfigInput } from "../node/options.ts";
import { silentLogger } from "../observability/logger.ts";
import type { EventStore } from "../persistence/event-store.ts";
import { MemoryEventStore } from "../persistence/memory-store.ts";

export interface TestNodeOptions {
  readonly twins: readonly TwinClass[];
  /** Defaults to a fresh in-memory store (kept across `restart`). */
  readonly store?: EventStore;
  /** Defaults to a manual clock at 2026-01-01T00:00:00Z. */
  readonly clock?: ManualClock;
  /** Node configuration (limits etc.); gRPC is off unless set here. */
  readonly config?: NodeConfigInput;
}

/** A typed handle on one twin of a {@link TestNode}. */
export class TwinHandle<C extends TwinClass> {
  constructor(
    private readonly test: TestNode,
    readonly cls: C,
    readonly id: string,
  ) {}

  get ref() {
    return { type: this.cls.type, id: this.id };
  }

  /** Invokes a command and returns the handler's result. */
  async invoke<K extends CommandName<C>>(command: K, args: CommandInput<C, K>): Promise<CommandResult<C, K>> {
    const { result } = await this.test.twins.invoke(this.ref, command, args as JsonObject);
    return result as CommandResult<C, K>;
  }

  /** Reports device state, as the device would. */
  report(patch: JsonObject, messageId?: string): Promise<ReportResult> {
    return this.test.twins.report(this.ref, patch, present({ messageId }));
  }

  /** Changes desired state, as a service would. */
  desire(patch: JsonObject, expectedVersion?: number): Promise<TwinView> {
    return this.test.twins.updateDesired(this.ref, patch, present({ expectedVersion }));
  }

  /** The twin's persisted view. */
  get(): Promise<TwinView> {
    return this.test.twins.get(this.ref);
  }

  /** The twin's whole history. */
  events(): Promise<EventRecord[]> {
    return this.test.twins.history(this.ref, { limit: 10_000 });
  }
}

export class TestNode {
  private constructor(
    public node: DoppelNode,
    readonly store: EventStore,
    readonly clock: ManualClock,
    private readonly options: TestNodeOptions,
  ) {}

  static async start(options: TestNodeOptions): Promise<TestNode> {
    const store = options.store ?? new MemoryEventStore();
    const clock = options.clock ?? new ManualClock();
    const node = await TestNode.#boot(options, store, clock);
    return new TestNode(node, store, clock, options);
  }

  static #boot(options: TestNodeOptions, store: EventStore, clock: ManualClock): Promise<DoppelNode> {
    const config = {
      nodeId: "test-node",
      store: { kind: "memory" },
      grpc: { listen: false },
      ...options.config,
    };
    return DoppelNode.start(config as NodeConfigInput, {
      twins: options.twins,
      store,
      clock,
      logger: silentLogger(),
    });
  }

  /** The node's twin API (validated, like the gateway's). */
  get twins(): TwinApi {
    return this.node.twins;
  }

  /** A typed handle on twin `id` of class `cls`. */
  twin<C extends TwinClass>(cls: C, id: string): TwinHandle<C> {
    return new TwinHandle(this, cls, id);
  }

  /** Moves the clock forward, firing reminders and idle passivation that fall due. */
  async advance(duration: Duration): Promise<void> {
    await this.clock.advance(toMillis(duration));
    await this.idle();
  }

  /** Waits until no turn runs and nothing waits to be written. */
  async idle(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      await settle();
      await this.node.engine.committer.whenIdle();
      const busy = [...this.node.engine.catalog.activations()].some((a) => a.busy || a.status === "loading");
      if (!busy && this.node.engine.committer.backlog === 0) return;
    }
  }

  /** Number of twins in memory. */
  get resident(): number {
    return this.node.engine.catalog.size;
  }

  /** Passivates every resident twin (as idleness would), keeping the node running. */
  async passivateAll(): Promise<void> {
    await this.node.engine.catalog.drain();
  }

  /** Stops the node gracefully and starts a new one on the same store and clock. */
  async restart(): Promise<void> {
    await this.node.stop();
    this.node = await TestNode.#boot(this.options, this.store, this.clock);
    await this.idle();
  }

  async stop(): Promise<void> {
    await this.node.stop();
  }
}
