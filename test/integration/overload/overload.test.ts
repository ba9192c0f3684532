import { describe, expect, it } from "vitest";
import { parseContactPoints } from "../../../runtime/persistence/cassandra/options.ts";
import { CASSANDRA, ensureCassandra, rawClient, runId } from "../cassandra/harness.ts";
import { natsUrl } from "../nats/harness.ts";
import { NODE_HEAP_MIB, type OverloadFigures, type OverloadOptions, runOverload } from "./overload-run.ts";

/** What every overload run must show, whatever the store. */
function expectLoadShedSafely(figures: OverloadFigures): void {
  // Load was shed, with the retry hint, and nothing failed any other way.
  expect(figures.grpcOutcomes["RESOURCE_EXHAUSTED"] ?? 0).toBeGreaterThan(0);
  expect(figures.refusedWithoutRetryAfter).toBe(0);
  expect(Object.keys(figures.grpcOutcomes).sort()).toEqual(["OK", "RESOURCE_EXHAUSTED"]);
  // Devices were throttled too, were told so, and their reports still arrived (below).
  expect(figures.devices.refusedByNode).toBeGreaterThan(0);
  expect(figures.devices.throttleErrors).toBeGreaterThan(0);
  expect(figures.devices.ackFailures).toBe(0);
  // Health answered SERVING to every check, all along.
  expect(figures.health.checks).toBeGreaterThan(0);
  expect(figures.health).toMatchObject({ failures: 0, notServing: 0 });
  // The node ran with its heap held to NODE_HEAP_MIB and never ran out (health answered all
  // along, above); a generous absolute bound on its resident memory covers what is off the heap.
  expect(figures.rssMiB.max).toBeLessThan(NODE_HEAP_MIB + 208);
  // Every report a client or device saw acknowledged is in its twin's log.
  expect(figures.acknowledged).toBeGreaterThan(0);
  expect(figures.missing).toBe(0);
}

const SHORT: Pick<OverloadOptions, "measureMs" | "overloadMs"> = { measureMs: 2000, overloadMs: 5000 };

/**
 * Overload (issue 10): a node process on real NATS with a small gRPC bound, driven at 5× its
 * measured capacity for a bounded time while devices report over JetStream. Figures are printed
 * by `npm run bench:overload`, never asserted as timings here.
 */
describe("overload of a node process", () => {
  it("sheds load with RESOURCE_EXHAUSTED (never INTERNAL), keeps RSS bounded and health answering, and loses no acknowledged report (SQLite)", async () => {
    expectLoadShedSafely(await runOverload({ nats: natsUrl(), store: "sqlite", ...SHORT }));
  }, 300_000);

  it("does the same on Cassandra", async () => {
    await ensureCassandra();
    const keyspace = `doppel_it_overload_${runId()}`;
    try {
      const figures = await runOverload({
        nats: natsUrl(),
        store: { kind: "cassandra", contactPoints: parseContactPoints(CASSANDRA), keyspace },
        ...SHORT,
      });
      expectLoadShedSafely(figures);
    } finally {
      const client = await rawClient();
      await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined);
      await client.shutdown();
    }
  }, 400_000);
});
