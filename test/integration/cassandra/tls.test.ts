/**
 * TLS to a real Cassandra: the suite's own server (`scripts/infra/cassandra.sh`) serves TLS on its
 * CQL port beside plaintext (`client_encryption_options.optional`), with a certificate signed by a
 * test CA the script makes (`DOPPEL_CASSANDRA_CA`). A node whose store connects over TLS, verifying
 * the server against that CA, commits events that a plaintext reader then finds; a store that
 * trusts another CA is refused at the handshake, so verification is really on.
 *
 * Runs when the server is the script's own (the CA is then known): always in `npm test` / CI.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "../../../runtime/core/json.ts";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import type { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";
import { makeCertificates, type TestCertificates } from "../../security/certificates.ts";
import { ensureCassandra, openStore, runId } from "./harness.ts";
import { Meter } from "./twins.ts";

const KEYSPACE = "doppel_it_tls";
const CA = process.env["DOPPEL_CASSANDRA_CA"];

describe.skipIf(CA === undefined)("TLS to Cassandra", () => {
  let certs: TestCertificates;
  let plain: CassandraEventStore;
  beforeAll(async () => {
    await ensureCassandra();
    certs = makeCertificates();
    plain = await openStore(KEYSPACE);
  });
  afterAll(async () => {
    await plain?.close();
    certs?.remove();
  });

  it("commits over TLS, verifying the server against the test CA", async () => {
    const secured = await openStore(KEYSPACE, { tls: { caFile: CA as string } });
    const node = await DoppelNode.start(
      { nodeId: "tls", store: { kind: "memory" }, grpc: { listen: false } },
      { twins: [Meter], store: secured, logger: silentLogger() },
    );
    const ref = { type: Meter.type, id: `tls-${runId()}` };
    try {
      await node.twins.invoke(ref, "add", { by: 2 } as JsonObject);
      const { version } = await node.twins.invoke(ref, "add", { by: 3 } as JsonObject);
      expect(version).toBe(2);
    } finally {
      await node.stop();
      await secured.close();
    }
    // What went over TLS is in the database: a plaintext connection reads both events back.
    const events = await plain.readEvents(ref, 0);
    expect(events.map((e) => e.data)).toEqual([
      { type: "added", by: 2 },
      { type: "added", by: 3 },
    ]);
  }, 120_000);

  it("refuses a server whose certificate another CA signed", async () => {
    const failure = await openStore(KEYSPACE, {
      tls: { caFile: certs.stranger.ca },
      startupRetry: "1s",
    }).then(
      async (store) => {
        await store.close();
        return undefined;
      },
      (error: unknown) => error as Error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(String(failure?.message)).toMatch(/certificate|self.signed|unable to verify/i);
  }, 120_000);
});
