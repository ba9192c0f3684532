/**
 * Shared by the Cassandra integration tests: where the server is, how to open stores on it, and
 * whether the tests own the server (and so may stop and start it).
 *
 * `DOPPEL_CASSANDRA` (e.g. `127.0.0.1:19042`, or a comma-separated list) points the tests at a
 * server; unset means the test server of `scripts/infra/cassandra.sh` at 127.0.0.1:19042, which
 * {@link ensureCassandra} starts if it is not running. Every test writes under keyspaces named
 * `doppel_it_*` and twin types made unique per run, so leftovers of earlier runs never matter.
 */
import { execFile } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type CassandraSettingsInput,
  parseContactPoints,
} from "../../../runtime/persistence/cassandra/options.ts";
import { CassandraEventStore } from "../../../runtime/persistence/cassandra/store.ts";

const run = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** The address `scripts/infra/cassandra.sh` serves on. */
export const OWN_ADDRESS = "127.0.0.1:19042";
/** The server under test. */
export const CASSANDRA = process.env["DOPPEL_CASSANDRA"] || OWN_ADDRESS;

/** True when the server is the script's own (unset or equal to its address): tests may restart it. */
export function ownsServer(): boolean {
  const value = process.env["DOPPEL_CASSANDRA"];
  return value === undefined || value === "" || value === OWN_ADDRESS;
}

/**
 * The keyspace a test names, with `DOPPEL_TEST_KEYSPACE_PREFIX` in front when set: runs of
 * several checkouts against one shared server (each at its own schema version) keep apart.
 */
export function testKeyspace(keyspace: string): string {
  return `${process.env["DOPPEL_TEST_KEYSPACE_PREFIX"] ?? ""}${keyspace}`;
}

/** Settings for a store on the server under test, in keyspace `keyspace`. */
export function settings(
  keyspace: string,
  extra: Partial<CassandraSettingsInput> = {},
): CassandraSettingsInput {
  return {
    contactPoints: parseContactPoints(CASSANDRA),
    localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
    keyspace: testKeyspace(keyspace),
    startupRetry: "60s",
    ...extra,
  };
}

/** Opens a store on the server under test. */
export function openStore(
  keyspace: string,
  extra: Partial<CassandraSettingsInput> = {},
): Promise<CassandraEventStore> {
  return CassandraEventStore.open(settings(keyspace, extra));
}

function reachable(address: string): Promise<boolean> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host: host ?? "127.0.0.1", port: Number(port ?? 9042) });
    socket.setTimeout(2000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Runs `scripts/infra/cassandra.sh <command>` (up, down); returns its log. */
export async function infra(command: "up" | "down"): Promise<string> {
  const { stdout, stderr } = await run("bash", ["scripts/infra/cassandra.sh", command], {
    cwd: REPO_ROOT,
    env: { ...process.env, DOPPEL_CASSANDRA: OWN_ADDRESS },
    timeout: 240_000,
  });
  return `${stdout}${stderr}`;
}

/** Makes sure the server answers: starts the script's server if the tests own it and it is down. */
export async function ensureCassandra(): Promise<void> {
  if (await reachable(CASSANDRA.split(",")[0]!)) return;
  if (!ownsServer()) throw new Error(`Cassandra at ${CASSANDRA} (DOPPEL_CASSANDRA) is not reachable`);
  await infra("up");
}

/** A short id unique to this test run (twin ids and types use it, so earlier runs never interfere). */
export function runId(): string {
  return Math.random().toString(36).slice(2, 10);
}

/** A bare driver client on the server under test, for checks and fault injection below the store. */
export async function rawClient(): Promise<import("cassandra-driver").Client> {
  const cassandra = (await import("cassandra-driver")).default;
  const client = new cassandra.Client({
    contactPoints: parseContactPoints(CASSANDRA),
    localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
  });
  await client.connect();
  return client;
}
