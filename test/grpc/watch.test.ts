import * as grpc from "@grpc/grpc-js";
import { InvalidArgument, Twin, z } from "doppel";
import { afterEach, describe, expect, it } from "vitest";
import type { TwinChange as FeedChange } from "../../runtime/core/records.ts";
import type { TwinChange__Output } from "../../runtime/grpc/generated/doppel/v1/TwinChange.ts";
import { loadContract } from "../../runtime/grpc/proto.ts";
import {
  barrier,
  type Harness,
  observeUnsubscribes,
  overrideApi,
  startHarness,
  startStallableProxy,
} from "./harness.ts";

/** A twin whose reports are large, so a few changes fill a slow client's socket buffers. */
class Blob extends Twin<{ reports: number }, { type: "counted" }, { data: string }> {
  static readonly type = "blob";
  static readonly reported = z.object({ data: z.string() }).partial();
  initialState() {
    return { reports: 0 };
  }
  apply(state: { reports: number }) {
    return { reports: state.reports + 1 };
  }
}

const t1 = { type: "thermostat", id: "t1" };

/** The next item of a stream that must not have ended. */
async function next<T>(iterator: AsyncIterator<T>): Promise<T> {
  const result = await iterator.next();
  if (result.done) throw new Error("the stream ended early");
  return result.value;
}

describe("gateway watch stream", () => {
  let h: Harness;
  afterEach(async () => {
    await h.stop();
  });

  it("refuses a forged change that does not follow the last version, and keeps sending the real ones", async () => {
    const listeners: ((change: FeedChange) => void)[] = [];
    h = await startHarness({
      wrapApi: (api) =>
        overrideApi(api, {
          watch: (ref, listener) => {
            listeners.push(listener);
            return api.watch(ref, listener);
          },
        }),
    });
    await h.client.reportState(t1, { temperature: 18 });
    const watch = h.client.watch(t1)[Symbol.asyncIterator]();
    const current = await next(watch);
    expect(listeners).toHaveLength(1);
    // What a forger on the change subject would send: a huge version, events that do not follow.
    const forged = {
      ref: t1,
      events: [{ seq: 1e9, type: "$reported", data: { type: "$reported" }, at: 0, commitId: "x" }],
      view: { ...(await h.test.twins.get(t1)), version: 1e9, reported: { temperature: 99 } },
    } as unknown as FeedChange;
    listeners[0]?.(forged);
    await h.client.reportState(t1, { temperature: 19 });
    const after = await next(watch);
    expect(after.twin.version).toBe(current.twin.version + 1);
    expect(after.twin.reported).toEqual({ temperature: 19 });
    await watch.return?.();
  });

  it("sends the current state first, then one change per report or command, and unsubscribes on cancel", async () => {
    const unsubscribes = observeUnsubscribes();
    h = await startHarness({ wrapApi: unsubscribes.wrap });
    await h.client.reportState(t1, { temperature: 18, heating: false });
    const current = await h.client.getTwin(t1);
    const watch = h.client.watch(t1)[Symbol.asyncIterator]();

    expect(await next(watch)).toEqual({ twin: current, events: [] });

    await h.client.reportState(t1, { heating: true });
    const second = await next(watch);
    expect(second.twin.reported).toEqual({ temperature: 18, heating: true });
    expect(second.events.map((e) => e.type)).toContain("$reported");
    expect(second.twin.version).toBe(second.events.at(-1)?.seq);

    await h.client.invoke(t1, "setTarget", { celsius: 25 });
    const third = await next(watch);
    expect(third.events.map((e) => e.type)).toContain("setPointChanged");
    expect(third.twin.state["setPoint"]).toBe(25);

    const unsubscribed = unsubscribes.next();
    await watch.return?.();
    await unsubscribed;
    expect(unsubscribes.count).toBe(1);
  });

  it("delivers a change made by another client", async () => {
    h = await startHarness();
    await h.client.reportState(t1, { temperature: 20 });
    const other = h.newClient();
    for await (const change of h.client.watch(t1)) {
      if (change.events.length === 0) {
        await other.invoke(t1, "setMode", { mode: "off" });
        continue;
      }
      expect(change.twin.state["mode"]).toBe("off");
      expect(change.events.map((e) => e.type)).toContain("modeChanged");
      break;
    }
  });

  it("skips the initial message of a twin without events and starts with its first change", async () => {
    h = await startHarness();
    const ready = barrier();
    const watch = h.client
      .watch({ type: "thermostat", id: "new" }, { onReady: ready.resolve })
      [Symbol.asyncIterator]();
    const first = next(watch);
    await ready.promise;
    await h.client.reportState({ type: "thermostat", id: "new" }, { temperature: 21 });
    const change = await first;
    expect(change.events[0]?.seq).toBe(1);
    expect(change.twin.reported).toEqual({ temperature: 21 });
    await watch.return?.();
  });

  it("with skip_current starts with the next change", async () => {
    h = await startHarness();
    await h.client.reportState(t1, { temperature: 20 });
    const ready = barrier();
    const watch = h.client.watch(t1, { skipCurrent: true, onReady: ready.resolve })[Symbol.asyncIterator]();
    const first = next(watch);
    await ready.promise;
    await h.client.reportState(t1, { temperature: 19 });
    expect((await first).twin.reported["temperature"]).toBe(19);
    await watch.return?.();
  });

  it("ends cleanly when the consumer breaks out of the loop", async () => {
    const unsubscribes = observeUnsubscribes();
    h = await startHarness({ wrapApi: unsubscribes.wrap });
    await h.client.reportState(t1, { temperature: 20 });
    const unsubscribed = unsubscribes.next();
    let seen = 0;
    for await (const _ of h.client.watch(t1)) {
      seen++;
      break;
    }
    expect(seen).toBe(1);
    await unsubscribed;
    expect(await h.client.listTypes()).toHaveLength(1);
  });

  it("fails with InvalidArgument for an invalid twin id", async () => {
    h = await startHarness();
    const consume = async () => {
      for await (const _ of h.client.watch({ type: "thermostat", id: "a.b" })) {
        // nothing arrives
      }
    };
    await expect(consume()).rejects.toThrow(InvalidArgument);
  });

  it("cuts off a client too slow to keep up with RESOURCE_EXHAUSTED instead of buffering without limit", async () => {
    const unsubscribes = observeUnsubscribes();
    h = await startHarness({ twins: [Blob], gateway: { watchBufferLimit: 4 }, wrapApi: unsubscribes.wrap });
    const proxy = await startStallableProxy(h.gateway.address);
    const slow = new (loadContract().Client)(proxy.address, grpc.credentials.createInsecure());
    try {
      const blob = { type: "blob", id: "b1" };
      const call = slow.watchTwin({ ...blob, skipCurrent: true });
      const received: TwinChange__Output[] = [];
      call.on("data", (change: TwinChange__Output) => received.push(change));
      const status = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
      const ready = barrier();
      call.once("metadata", () => ready.resolve());
      await ready.promise;
      proxy.stall();

      // Each report is one ~100 KB change. Once the socket buffers are full the server's writes push
      // back, its queue for this watcher fills, and it drops the watcher rather than keep growing.
      let changes = 0;
      while (unsubscribes.count === 0 && changes < 2000) {
        await h.test.twins.report(blob, { data: String(changes % 10).repeat(50_000) });
        changes++;
      }
      expect(unsubscribes.count).toBe(1);
      // Other calls are served meanwhile.
      expect(await h.client.listTypes()).toHaveLength(2);

      proxy.unstall();
      const error = await status;
      expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(error.metadata.get("doppel-error-code")).toEqual(["RESOURCE_EXHAUSTED"]);
      expect(received.length).toBeGreaterThan(0);
      expect(received.length).toBeLessThan(changes);
      // What did arrive is in order, without gaps.
      const versions = received.map((c) => c.twin?.version ?? 0);
      expect(versions).toEqual(versions.map((_, i) => (versions[0] ?? 0) + i));
    } finally {
      slow.close();
      await proxy.close();
    }
  });
});
