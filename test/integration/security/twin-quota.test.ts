/**
 * The twin-creation quota of an API key, on a real node: `doppel keys create --max-twins 2`, then
 * `doppel start` (its own process, on SQLite in a data folder, and on the Cassandra test server)
 * serving gRPC and REST with that keys file. The third twin the key tries to create is refused (gRPC RESOURCE_EXHAUSTED with
 * QUOTA_EXCEEDED, REST 429), the twins it created stay writable, the refusals are counted on
 * /metrics, `doppel keys list` shows 2/2, and all of it holds after the node restarts. Raising the
 * quota with `doppel keys update` lets the running node create one more, with the same key.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, NotFound, QuotaExceeded } from "doppel";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DoppelClient } from "../../../runtime/grpc/client.ts";
import { loadContract } from "../../../runtime/grpc/proto.ts";
import { doppel, PATIENCE, startNode, stopNode } from "../../cli/doppel-process.ts";
import { rawUnary } from "../../grpc/harness.ts";
import { eventually } from "../../support/eventually.ts";
import { ensureCassandra, settings } from "../cassandra/harness.ts";

type Node = Awaited<ReturnType<typeof startNode>>;

/** Runs `write` on thermostat `id` and checks that it moved the twin's version on. */
async function expectWritten(
  client: DoppelClient,
  id: string,
  write: () => Promise<{ readonly version: number }>,
): Promise<void> {
  const before = await client.getTwin({ type: "thermostat", id });
  const { version } = await write();
  expect(version).toBeGreaterThan(before.version);
  expect((await client.getTwin({ type: "thermostat", id })).version).toBe(version);
}

/** The address after `label` in the node's start-up lines (`HTTP    http://127.0.0.1:1234 ...`). */
function printed(node: Node, label: string): string {
  const match = new RegExp(`${label}\\s+(http://127\\.0\\.0\\.1:\\d+)`).exec(node.output());
  if (!match?.[1]) throw new Error(`no ${label} address in: ${node.output()}`);
  return match[1];
}

/** Where the node keeps its twins: the flags `doppel start` and `doppel keys list` take for it. */
const STORES: readonly {
  readonly name: string;
  /** What the node prints for its store. */
  readonly shows: string;
  readonly flags: (dir: string) => Promise<string[]>;
}[] = [
  { name: "SQLite", shows: "store   sqlite", flags: async (dir) => ["--data", join(dir, "data")] },
  {
    name: "Cassandra",
    shows: "store   cassandra",
    flags: async (dir) => {
      await ensureCassandra();
      const file = join(dir, "doppel.json");
      writeFileSync(file, JSON.stringify({ store: { kind: "cassandra", ...settings("doppel_it_quota") } }));
      return ["--data", join(dir, "data"), "--config", file];
    },
  },
];

describe.each(STORES)(
  "a key's twin quota (--max-twins) on a real node on $name",
  { timeout: PATIENCE },
  ({ flags, shows }) => {
    const dir = mkdtempSync(join(tmpdir(), "doppel-quota-"));
    const keys = join(dir, "api-keys.json");
    // Twin ids new to this run: a Cassandra keyspace outlives it, and a twin that exists is not created.
    const run = randomUUID().slice(0, 8);
    const q = (n: number) => `q${run}-${n}`;
    let store: string[] = [];
    let args: string[] = [];
    let key = "";
    let node: Node;
    const clients: { close(): void }[] = [];

    const client = () => {
      const made = new DoppelClient(node.address, { token: key });
      clients.push(made);
      return made;
    };
    /** The raw gRPC status and Doppel code of an UpdateDesired, as they are on the wire. */
    const rawDesired = async (id: string) => {
      const raw = new (loadContract().Client)(node.address, grpc.credentials.createInsecure());
      clients.push(raw);
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${key}`);
      const { error } = await rawUnary((cb) =>
        raw.updateDesired(
          { type: "thermostat", id, patch: { fields: { heating: { boolValue: true } } } },
          metadata,
          cb,
        ),
      );
      return { status: error?.code, code: error?.metadata.get("doppel-error-code")[0] };
    };
    const keysList = async () => {
      const listed = await doppel(["keys", "list", "-f", keys, ...store]);
      expect(listed.code, listed.stderr).toBe(0);
      return listed.stdout;
    };

    beforeAll(async () => {
      store = await flags(dir);
      args = [...store, "--no-demo", "--api-keys", keys, "--http", "127.0.0.1:0"];
      const created = await doppel([
        "keys",
        "create",
        "-f",
        keys,
        "--scopes",
        "read,write,command",
        "--max-twins",
        "2",
      ]);
      expect(created.code, created.stderr).toBe(0);
      key = created.stdout.trim();
      node = await startNode([...args, "--metrics", "127.0.0.1:0"]);
      expect(node.output()).toContain(shows);
    }, PATIENCE);

    afterAll(async () => {
      for (const c of clients) c.close();
      if (node && node.child.exitCode === null) await stopNode(node.child);
      rmSync(dir, { recursive: true, force: true });
    });

    it("creates two twins, refuses the third with RESOURCE_EXHAUSTED / QUOTA_EXCEEDED naming the quota and the count, and keeps the two writable", async () => {
      const c = client();
      await c.invoke({ type: "thermostat", id: q(1) }, "setTarget", { celsius: 22 });
      await c.reportState({ type: "thermostat", id: q(2) }, { temperature: 19 });

      const refused = await c
        .updateDesired({ type: "thermostat", id: q(3) }, { heating: true })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(QuotaExceeded);
      expect((refused as QuotaExceeded).code).toBe(ErrorCode.QuotaExceeded);
      expect((refused as QuotaExceeded).details).toMatchObject({ quota: "maxTwins", limit: 2, used: 2 });
      expect((refused as Error).message).toContain(
        "may create at most 2 twins (quota maxTwins) and has created 2",
      );
      expect(await rawDesired(q(3))).toEqual({
        status: grpc.status.RESOURCE_EXHAUSTED,
        code: ErrorCode.QuotaExceeded,
      });
      await expect(c.getTwin({ type: "thermostat", id: q(3) })).rejects.toBeInstanceOf(NotFound);

      // Over REST, the same refusal is a 429 problem.
      const http = await fetch(`${printed(node, "HTTP")}/v1/twins/thermostat/${q(4)}/desired`, {
        method: "PUT",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ heating: true }),
      });
      expect(http.status).toBe(429);
      expect(http.headers.get("retry-after")).toBeNull(); // a quota does not refill by itself
      expect(await http.json()).toMatchObject({
        code: "QUOTA_EXCEEDED",
        details: { quota: "maxTwins", used: 2 },
      });

      // Writes to the twins the key created are not affected.
      await expectWritten(c, q(1), () =>
        c.invoke({ type: "thermostat", id: q(1) }, "setTarget", { celsius: 23 }),
      );
      await expectWritten(c, q(2), () =>
        c.updateDesired({ type: "thermostat", id: q(2) }, { heating: false }),
      );

      const metrics = await (await fetch(`${printed(node, "metrics")}/metrics`)).text();
      expect(metrics).toMatch(/doppel_quota_exceeded_total\{[^}]*quota="maxTwins"[^}]*\} 3\n/);
      expect(await keysList()).toMatch(/\s2\/2\s/);
    });

    it("still refuses the third twin after the node restarts, and the two still take writes", async () => {
      await stopNode(node.child);
      node = await startNode(args);
      const c = client();
      await expect(
        c.reportState({ type: "thermostat", id: q(5) }, { temperature: 20 }),
      ).rejects.toBeInstanceOf(QuotaExceeded);
      expect(await rawDesired(q(3))).toEqual({
        status: grpc.status.RESOURCE_EXHAUSTED,
        code: ErrorCode.QuotaExceeded,
      });
      await expectWritten(c, q(1), () =>
        c.reportState({ type: "thermostat", id: q(1) }, { temperature: 24 }),
      );
      await expectWritten(c, q(2), () =>
        c.invoke({ type: "thermostat", id: q(2) }, "setTarget", { celsius: 25 }),
      );
      expect(await keysList()).toMatch(/\s2\/2\s/);
    });

    it("takes a raised quota from `doppel keys update` without a restart, with the same key", async () => {
      const id = key.split("_")[1] ?? "";
      const updated = await doppel(["keys", "update", id, "-f", keys, "--max-twins", "3"]);
      expect(updated.code, updated.stderr).toBe(0);
      expect(updated.stdout).toContain(`updated ${id}: scopes read,write,command;`);
      expect(updated.stdout).toContain("max twins 3");
      const c = client();
      // The node re-reads the keys file on use, at most once a second: refused until it has.
      await eventually(
        () => c.reportState({ type: "thermostat", id: q(6) }, { temperature: 21 }),
        "the node to apply the raised quota",
      );
      await expect(
        c.reportState({ type: "thermostat", id: q(7) }, { temperature: 21 }),
      ).rejects.toBeInstanceOf(QuotaExceeded);
      expect(await keysList()).toMatch(/\s3\/3\s/);
    });
  },
);
