import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { type EventRecord, Unavailable } from "doppel";
import type { HistoryRange, TwinApi } from "doppel/node";
import { describe, expect, it } from "vitest";
import { SystemClock } from "../../runtime/core/clock.ts";
import type { HandlerContext } from "../../runtime/grpc/calls.ts";
import { streamHistory, streamTelemetry } from "../../runtime/grpc/read-streams.ts";
import { StreamRegistry } from "../../runtime/grpc/streams.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { barrier } from "./harness.ts";

/** A stand-in for a grpc-js server stream that takes `capacity` messages before asking to wait. */
class FakeCall extends EventEmitter {
  cancelled = false;
  writableNeedDrain = false;
  readonly written: unknown[] = [];
  ended = false;
  status: grpc.ServiceError | undefined;
  #full = barrier();

  constructor(
    readonly request: unknown,
    private readonly capacity = Number.POSITIVE_INFINITY,
  ) {
    super();
    this.on("error", (error: grpc.ServiceError) => {
      this.status = error;
      this.ended = true;
    });
  }
  write(message: unknown): boolean {
    this.written.push(message);
    if (this.written.length % this.capacity !== 0) return true;
    this.writableNeedDrain = true;
    this.#full.resolve();
    this.#full = barrier();
    return false;
  }
  /** Resolves the next time a write fills the buffer. */
  whenFull(): Promise<void> {
    return this.#full.promise;
  }
  drain(): void {
    this.writableNeedDrain = false;
    this.emit("drain");
  }
  end(): void {
    this.ended = true;
  }
  cancel(): void {
    this.cancelled = true;
    this.emit("cancelled");
  }
}

function event(seq: number): EventRecord {
  return {
    seq,
    type: "e",
    data: { type: "e" },
    at: seq * 1000,
    commitId: `c${seq}`,
    writer: { node: "n", epoch: 0 },
  };
}

/** A TwinApi whose history has `total` events, counting the pages read. */
function historyApi(total: number, onPage: (range: HistoryRange) => void = () => {}): TwinApi {
  return {
    history: async (_ref: unknown, range: HistoryRange) => {
      onPage(range);
      const from = range.fromVersion ?? 1;
      const to = Math.min(total, range.toVersion ?? total);
      const events: EventRecord[] = [];
      for (let seq = from; seq <= to && events.length < range.limit; seq++) events.push(event(seq));
      return events;
    },
    telemetry: async () =>
      Array.from({ length: 10 }, (_, i) => ({ ref: { type: "t", id: "i" }, at: i, metrics: { m: i } })),
  } as unknown as TwinApi;
}

function context(api: TwinApi, registry = new StreamRegistry()): HandlerContext {
  return {
    api,
    types: () => [],
    cluster: async () => ({ name: "", shardCount: 0, self: "", nodes: [], shards: [] }),
    logger: silentLogger(),
    clock: SystemClock,
    historyPageSize: 4,
    watchBufferLimit: 10,
    streams: registry,
  };
}

const request = { type: "t", id: "i", fromVersion: 0, toVersion: 0, since: null, until: null, limit: 0 };
type HistoryCall = Parameters<typeof streamHistory>[1];

describe("history and telemetry streams", () => {
  it("waits for the client to drain before writing more", async () => {
    const pages: HistoryRange[] = [];
    const call = new FakeCall(request, 3);
    const done = streamHistory(context(historyApi(10, (r) => pages.push(r))), call as unknown as HistoryCall);
    await call.whenFull();
    expect(call.written).toHaveLength(3);
    expect(pages).toHaveLength(1);
    for (const written of [6, 9]) {
      const full = call.whenFull();
      call.drain();
      await full;
      expect(call.written).toHaveLength(written);
    }
    call.drain();
    await done;
    expect(call.ended).toBe(true);
    expect(call.written).toHaveLength(10);
    expect(pages.map((p) => p.fromVersion)).toEqual([undefined, 5, 9]);
  });

  it("stops reading pages once the client cancels", async () => {
    const pages: HistoryRange[] = [];
    const call = new FakeCall(request);
    const api = historyApi(100, (range) => {
      pages.push(range);
      if (pages.length === 2) call.cancel();
    });
    await streamHistory(context(api), call as unknown as HistoryCall);
    expect(pages).toHaveLength(2);
    expect(call.written).toHaveLength(4);
    expect(call.ended).toBe(false);
  });

  it("stops waiting for a drain when the client cancels", async () => {
    const call = new FakeCall(request, 2);
    const done = streamHistory(context(historyApi(100)), call as unknown as HistoryCall);
    await call.whenFull();
    call.cancel();
    await done;
    expect(call.written).toHaveLength(2);
  });

  it("ends open streams with UNAVAILABLE when the gateway stops", async () => {
    const registry = new StreamRegistry();
    const call = new FakeCall(request, 2);
    const done = streamHistory(context(historyApi(100), registry), call as unknown as HistoryCall);
    await call.whenFull();
    expect(registry.size).toBe(1);
    registry.closeAll(new Unavailable("stopping"));
    await done;
    expect(call.status?.code).toBe(grpc.status.UNAVAILABLE);
    expect(registry.size).toBe(0);
  });

  it("streams telemetry and ends with OK", async () => {
    const call = new FakeCall({ type: "t", id: "i", since: null, until: null, limit: 0, interval: null });
    await streamTelemetry(context(historyApi(0)), call as unknown as Parameters<typeof streamTelemetry>[1]);
    expect(call.written).toHaveLength(10);
    expect(call.ended).toBe(true);
    expect(call.status).toBeUndefined();
  });
});
