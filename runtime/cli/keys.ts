/**
 * `doppel keys create|list|update|revoke`: manages the API keys file a node reads (`--api-keys`). Keys
 * are shown once, at creation; the file keeps only their SHA-256. Nodes re-read the file within a
 * second of a change, so a revoked key is refused without a restart (copy the file to every node,
 * e.g. as a Kubernetes Secret). A key's twin quota (`--max-twins`) is kept with it; how many
 * twins it has created is counted in the event store, which `list` reads (the store of
 * `--data`/`--config`/`--cassandra`, as `doppel start` would open it). See docs/security.md.
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { InvalidArgument } from "../core/errors.ts";
import { present } from "../core/present.ts";
import { isScope, principalLabel, type Scope } from "../core/principal.ts";
import { compileConfig } from "../node/options.ts";
import { readTwinsCreated } from "../node/stores.ts";
import {
  type ApiKeyLimits,
  type ApiKeyRecord,
  createKey,
  type KeyChange,
  readKeysFile,
  revokeKey,
  updateKey,
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

/** A restriction list (`--types`, `--prefix`): at least one name. */
function namesOf(text: string | undefined, flag: string): string[] | undefined {
  const names = list(text);
  if (names !== undefined && names.length === 0)
    throw new InvalidArgument(`${flag} needs at least one name (comma-separated)`);
  return names;
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

/** One line: what a key may do and within which limits. */
function policyOf(key: ApiKeyRecord): string {
  const limits = key.limits ?? {};
  return [
    `scopes ${key.scopes.join(",")}`,
    `types ${key.types?.join(",") ?? "*"}`,
    `prefixes ${key.idPrefixes?.join(",") ?? "*"}`,
    `rate ${limits.ratePerSecond === undefined ? "default" : `${limits.ratePerSecond}/s`}`,
    ...(limits.burst === undefined ? [] : [`burst ${limits.burst}`]),
    `max twins ${limits.maxTwins ?? "unlimited"}`,
  ].join("; ");
}

/** The public view of a key record (no hash). */
function publicRecord(key: ApiKeyRecord): Omit<ApiKeyRecord, "sha256"> {
  const { sha256: _hash, ...rest } = key;
  return rest;
}

/** `--rate`: calls per second, a positive number. */
function rateOf(text: string): number {
  const rate = Number(text);
  if (!(rate > 0 && Number.isFinite(rate)))
    throw new InvalidArgument(`--rate must be a positive number, got ${text}`);
  return rate;
}

/** `--max-twins`: a whole number of at least 0. */
function maxTwinsOf(text: string): number {
  const maxTwins = Number(text);
  if (!(Number.isSafeInteger(maxTwins) && maxTwins >= 0))
    throw new InvalidArgument(`--max-twins must be a whole number of at least 0, got ${text}`);
  return maxTwins;
}

/** What `keys create` and `keys update` take besides the file. */
interface PolicyFlags {
  readonly scopes?: string;
  readonly types?: string;
  readonly prefix?: string;
  readonly rate?: string;
  readonly burst?: string;
  readonly maxTwins?: string;
  readonly description?: string;
}

export function createKeyCommand(flags: KeysFlags & PolicyFlags & { scopes: string }, out: Out): void {
  const scopes = scopesOf(flags.scopes);
  const rate = flags.rate === undefined ? undefined : rateOf(flags.rate);
  const burst = integerOption(flags.burst, "--burst");
  const maxTwins = flags.maxTwins === undefined ? undefined : maxTwinsOf(flags.maxTwins);
  const limits: ApiKeyLimits = present({ ratePerSecond: rate, burst, maxTwins });
  const types = namesOf(flags.types, "--types");
  const idPrefixes = namesOf(flags.prefix, "--prefix");
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

/** `none` (remove the setting) or the value `parse` makes of the text; absent: unchanged. */
function orNone<T>(text: string | undefined, parse: (text: string) => T): T | null | undefined {
  if (text === undefined) return undefined;
  return text === "none" ? null : parse(text);
}

/**
 * `doppel keys update ID`: changes an active key's scopes, restrictions, limits or description;
 * the key itself stays valid (services keep it). `none` removes a restriction or limit.
 */
export function updateKeyCommand(id: string, flags: KeysFlags & PolicyFlags, out: Out): void {
  const limits = present({
    ratePerSecond: orNone(flags.rate, rateOf),
    burst: orNone(flags.burst, (text) => integerOption(text, "--burst")),
    maxTwins: orNone(flags.maxTwins, maxTwinsOf),
  });
  const change: KeyChange = {
    ...present({
      scopes: flags.scopes === undefined ? undefined : scopesOf(flags.scopes),
      types: orNone(flags.types, (text) => namesOf(text, "--types")),
      idPrefixes: orNone(flags.prefix, (text) => namesOf(text, "--prefix")),
      description: orNone(flags.description, (text) => text),
    }),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
  };
  if (Object.keys(change).length === 0) {
    throw new InvalidArgument(
      "keys update: nothing to change (give --scopes, --types, --prefix, --rate, --burst, --max-twins or --description)",
    );
  }
  const record = updateKey(flags.file, id, change);
  if (flags.json) out(JSON.stringify(publicRecord(record)));
  else out(`updated ${record.id}: ${policyOf(record)} (nodes apply it within a second)`);
}

export function revokeKeyCommand(id: string, flags: KeysFlags, out: Out): void {
  const record = revokeKey(flags.file, id);
  if (flags.json) out(JSON.stringify(publicRecord(record)));
  else out(`revoked ${record.id} (nodes refuse it within a second)`);
}
