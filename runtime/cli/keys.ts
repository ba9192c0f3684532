/**
 * `doppel keys create|list|revoke`: manages the API keys file a node reads (`--api-keys`). Keys
 * are shown once, at creation; the file keeps only their SHA-256. Nodes re-read the file within a
 * second of a change, so a revoked key is refused without a restart (copy the file to every node,
 * e.g. as a Kubernetes Secret). A key's twin quota (`--max-twins`) is kept with it; how many
 * twins it has created is counted in the event store, which `list` reads (the store of
 * `--data`/`--config`/`--cassandra`, as `doppel start` would open it). See docs/security.md.
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { InvalidArgument } from "../core/errors.ts";
import { isScope, principalLabel, type Scope } from "../core/principal.ts";
import { compileConfig } from "../node/options.ts";
import { readTwinsCreated } from "../node/stores.ts";
import {
  type ApiKeyLimits,
  type ApiKeyRecord,
  createKey,
  readKeysFile,
  revokeKey,
} from "../security/api-keys.ts";
import { integerOption } from "./arguments.ts";
import { table } from "./format.ts";
import { buildConfig, type StartFlags } from "./start-config.ts";

type Out = (line: string) => void;

interface KeysFlags {
  readonly file: string;
  readonly json?: boolean;
}

function list(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const items = text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
  return items;
}

function scopesOf(text: string): Scope[] {
  const scopes = list(text) ?? [];
  if (scopes.length === 0)
    throw new InvalidArgument("--scopes needs at least one of read, write, command, admin");
  for (const scope of scopes) {
    if (!isScope(scope)) {
      throw new InvalidArgument(
        `--scopes: unknown scope ${JSON.stringify(scope)} (read, write, command, admin)`,
      );
    }
  }
  return scopes as Scope[];
}

/** The label the event store counts a key's creations under. */
function keyPrincipal(key: ApiKeyRecord): string {
  return principalLabel({ kind: "service-key", id: key.id, scopes: key.scopes });
}

/** `used/max` of a key with a twin quota, `-` otherwise. */
function twinsColumn(key: ApiKeyRecord, used: ReadonlyMap<string, number> | undefined): string {
  const max = key.limits?.maxTwins;
  if (max === undefined) return "-";
  return `${used?.get(keyPrincipal(key)) ?? "?"}/${max}`;
}

function describe(key: ApiKeyRecord, used: ReadonlyMap<string, number> | undefined): string[] {
  return [
    key.id,
    key.scopes.join(","),
    key.types?.join(",") ?? "*",
    key.idPrefixes?.join(",") ?? "*",
    key.limits?.ratePerSecond === undefined ? "-" : `${key.limits.ratePerSecond}/s`,
    twinsColumn(key, used),
    new Date(key.createdAt).toISOString(),
    key.revokedAt === undefined ? "active" : `revoked ${new Date(key.revokedAt).toISOString()}`,
    key.description ?? "",
  ];
}

/** The public view of a key record (no hash). */
function publicRecord(key: ApiKeyRecord): Omit<ApiKeyRecord, "sha256"> {
  const { sha256: _hash, ...rest } = key;
  return rest;
}

export function createKeyCommand(
  flags: KeysFlags & {
    scopes: string;
    types?: string;
    prefix?: string;
    rate?: string;
    burst?: string;
    maxTwins?: string;
    description?: string;
  },
  out: Out,
): void {
  const scopes = scopesOf(flags.scopes);
  const rate = flags.rate === undefined ? undefined : Number(flags.rate);
  if (rate !== undefined && !(rate > 0))
    throw new InvalidArgument(`--rate must be a positive number, got ${flags.rate}`);
  const burst = integerOption(flags.burst, "--burst");
  const maxTwins = flags.maxTwins === undefined ? undefined : Number(flags.maxTwins);
  if (maxTwins !== undefined && !(Number.isSafeInteger(maxTwins) && maxTwins >= 0))
    throw new InvalidArgument(`--max-twins must be a whole number of at least 0, got ${flags.maxTwins}`);
  const limits: ApiKeyLimits = {
    ...(rate !== undefined ? { ratePerSecond: rate } : {}),
    ...(burst !== undefined ? { burst } : {}),
    ...(maxTwins !== undefined ? { maxTwins } : {}),
  };
  const types = list(flags.types);
  const idPrefixes = list(flags.prefix);
  mkdirSync(dirname(flags.file), { recursive: true });
  const { key, record } = createKey(flags.file, {
    scopes,
    ...(types ? { types } : {}),
    ...(idPrefixes ? { idPrefixes } : {}),
    limits,
    ...(flags.description ? { description: flags.description } : {}),
  });
  if (flags.json) {
    out(JSON.stringify({ key, ...publicRecord(record) }));
    return;
  }
  out(key);
  // On stderr, so that KEY=$(doppel keys create ...) captures the key alone.
  process.stderr.write(
    `(key ${record.id}: ${record.scopes.join(",")}; shown once — only its hash is kept in ${flags.file})\n`,
  );
}

/** What `keys list` reads besides the keys file: the node's store, to show the twins each key created. */
export type ListKeysFlags = KeysFlags & Pick<StartFlags, "config" | "data" | "cassandra">;

/**
 * Twins created by each key with a quota, from the store; `undefined` (shown as `?`) when the
 * store cannot be read, said on stderr.
 */
async function twinsCreatedBy(
  keys: readonly ApiKeyRecord[],
  flags: ListKeysFlags,
): Promise<ReadonlyMap<string, number> | undefined> {
  const counted = keys.filter((key) => key.limits?.maxTwins !== undefined).map(keyPrincipal);
  if (counted.length === 0) return new Map();
  try {
    const { config, data, cassandra } = flags;
    const settings = buildConfig(
      { ...(config ? { config } : {}), ...(data ? { data } : {}), ...(cassandra ? { cassandra } : {}) },
      process.env,
    );
    return await readTwinsCreated(compileConfig(settings, "configuration"), counted);
  } catch (error) {
    process.stderr.write(`(twins created: cannot read the event store: ${(error as Error).message})\n`);
    return undefined;
  }
}

export async function listKeysCommand(flags: ListKeysFlags, out: Out): Promise<void> {
  const { keys } = readKeysFile(flags.file);
  const used = await twinsCreatedBy(keys, flags);
  if (flags.json) {
    for (const key of keys) {
      const created = key.limits?.maxTwins === undefined ? undefined : used?.get(keyPrincipal(key));
      out(
        JSON.stringify({ ...publicRecord(key), ...(created === undefined ? {} : { twinsCreated: created }) }),
      );
    }
    return;
  }
  if (keys.length === 0) {
    out(`(no API keys in ${flags.file})`);
    return;
  }
  out(
    table(
      ["ID", "SCOPES", "TYPES", "PREFIXES", "RATE", "TWINS", "CREATED", "STATUS", "DESCRIPTION"],
      keys.map((key) => describe(key, used)),
    ),
  );
}

export function revokeKeyCommand(id: string, flags: KeysFlags, out: Out): void {
  const record = revokeKey(flags.file, id);
  if (flags.json) out(JSON.stringify(publicRecord(record)));
  else out(`revoked ${record.id} (nodes refuse it within a second)`);
}
