/**
 * Cassandra lost while running: the test stops and restarts the Cassandra process under a node
 * that keeps writing. Callers get UNAVAILABLE (never a false acknowledgement), the node resumes by
 * itself when Cassandra is back, and in the end every acknowledged report is in the log exactly
 * once, with no duplicates and no forks — even though callers retried with the same message id.
 *
 * Only runs when the tests own the server (`DOPPEL_CASSANDRA` unset or the script's own
 * 127.0.0.1:19042): it stops and starts it with `scripts/infra/cassandra.sh`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DoppelError, ErrorCode } from "../../../runtime/core/errors.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { eventually } from "../../support/eventually.ts";
import { CASSANDRA, ensureCassandra, infra, OWN_ADDRESS, openStore, ownsServer, runId } from "./harness.ts";
import { Meter } from "./twins.ts";

const KEYSPACE = "doppel_it_runtime";
const RUN = runId();
const owns = ownsServer();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe.skipIf(!owns)("cassandra restart during writes", () => {
  let store: CassandraEventStore;
  let node: DoppelNode;

  beforeAll(async () => {
    await ensureCassandra();
    store = await openStore(KEYSPACE, {
      requestTimeout: "5s",
      reconnect: { baseDelay: 200, maxDelay: 2000 },
    });
    node = await DoppelNode.start(
      { nodeId: "restart", store: { kind: "memory" }, grpc: { listen: false } },
      { twins: [Meter], store, logger: silentLogger() },
    );
  });

  afterAll(async () => {
    await ensureCassandra(); // never leave the suite's server down for the next file
    await node?.stop();
    await store?.close();
  });

  it("loses no acknowledged event and writes no duplicate when Cassandra restarts under load", async () => {
    const twins = Array.from({ length: 16 }, (_, i) => ({ type: Meter.type, id: `restart-${RUN}-${i}` }));
    const acked = new Map<string, string>(); // message id -> twin id
    const failures = new Map<string, number>(); // error code -> count
    let stopping = false;
    let ackedAfterUp = 0;
    let up = false;

    const worker = async (w: number) => {
      for (let k = 0; !stopping; k++) {
        const ref = twins[(w + k * 8) % twins.length]!;
        const messageId = `${RUN}-w${w}-${k}`;
        // A device retries a report with the same message id until it is acknowledged.
        for (;;) {
          try {
            await node.twins.report(ref, { n: k }, { messageId });
            acked.set(messageId, ref.id);
            if (up) ackedAfterUp++;
            break;
          } catch (error) {
            const code = (error as DoppelError).code ?? "UNTYPED";
            failures.set(code, (failures.get(code) ?? 0) + 1);
            await sleep(50);
          }
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));

    await eventually(() => acked.size >= 200, "writes before the restart", 30_000);
    const down = Date.now();
    await infra("down");
    const ackedWhileDown = acked.size;
    // Every worker has tried at least once against the stopped Cassandra and been refused.
    const refusals = () => [...failures.values()].reduce((sum, n) => sum + n, 0);
    const refusedBefore = refusals();
    await eventually(() => refusals() >= refusedBefore + 8, "writes refused while Cassandra is down", 60_000);
    expect(acked.size).toBe(ackedWhileDown); // nothing is acknowledged while Cassandra is gone
    await infra("up");
    up = true;
    await eventually(() => ackedAfterUp >= 200, "writes to resume by themselves", 60_000);
    const outage = Date.now() - down;
    stopping = true;
    await Promise.all(workers);

    console.log(
      `restart: ${acked.size} reports acknowledged, outage ${outage} ms, failures seen ${JSON.stringify(Object.fromEntries(failures))}`,
    );
    expect(failures.get(ErrorCode.Unavailable) ?? 0).toBeGreaterThan(0);
    expect(
      [...failures.keys()].every(
        (code) => code === ErrorCode.Unavailable || code === ErrorCode.ResourceExhausted,
      ),
    ).toBe(true);

    // Check with a fresh store (another node's view of the keyspace).
    const check = await openStore(KEYSPACE);
    try {
      const seen = new Map<string, number>();
      for (const ref of twins) {
        const events = await check.readEvents(ref, 0); // fails on a fork
        expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
        expect((await check.readView(ref))?.version).toBe(events.length);
        for (const event of events) {
          if (event.causation) seen.set(event.causation, (seen.get(event.causation) ?? 0) + 1);
        }
      }
      const duplicates = [...seen].filter(([, n]) => n > 1);
      expect(duplicates).toEqual([]);
      const lost = [...acked.keys()].filter((id) => !seen.has(id));
      expect(lost).toEqual([]);
    } finally {
      await check.close();
    }
  }, 240_000);
});

if (!owns) {
  console.log(
    `skipping the Cassandra restart test: DOPPEL_CASSANDRA=${CASSANDRA} is not the server this suite may ` +
      `stop and start (${OWN_ADDRESS}, via scripts/infra/cassandra.sh)`,
  );
}
