/**
 * `doppel keys create|list|revoke`: manages the API keys file a node reads (`--api-keys`). Keys
 * are shown once, at creation; the file keeps only their SHA-256. Nodes re-read the file within a
 * second of a change, so a revoked key is refused without a restart (copy the file to every node,
 * e.g. as a Kubernetes Secret). See docs/security.md.
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { InvalidArgument } from "../core/errors.ts";
import { isScope, type Scope } from "../core/principal.ts";
import {
  type ApiKeyLimits,
  type ApiKeyRecord,
  createKey,
  readKeysFile,
  revokeKey,
} from "../security/api-keys.ts";
import { integerOption } from "./arguments.ts";
import { table } from "./format.ts";

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

function describe(key: ApiKeyRecord): string[] {
  return [
    key.id,
    key.scopes.join(","),
    key.types?.join(",") ?? "*",
    key.idPrefixes?.join(",") ?? "*",
    key.limits?.ratePerSecond === undefined ? "-" : `${key.limits.ratePerSecond}/s`,
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
    description?: string;
  },
  out: Out,
): void {
  const scopes = scopesOf(flags.scopes);
  const rate = flags.rate === undefined ? undefined : Number(flags.rate);
  if (rate !== undefined && !(rate > 0))
    throw new InvalidArgument(`--rate must be a positive number, got ${flags.rate}`);
  const burst = integerOption(flags.burst, "--burst");
  const limits: ApiKeyLimits = {
    ...(rate !== undefined ? { ratePerSecond: rate } : {}),
    ...(burst !== undefined ? { burst } : {}),
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

export function listKeysCommand(flags: KeysFlags, out: Out): void {
  const { keys } = readKeysFile(flags.file);
  if (flags.json) {
    for (const key of keys) out(JSON.stringify(publicRecord(key)));
    return;
  }
  if (keys.length === 0) {
    out(`(no API keys in ${flags.file})`);
    return;
  }
  out(
    table(
      ["ID", "SCOPES", "TYPES", "PREFIXES", "RATE", "CREATED", "STATUS", "DESCRIPTION"],
      keys.map(describe),
    ),
  );
}

export function revokeKeyCommand(id: string, flags: KeysFlags, out: Out): void {
  const record = revokeKey(flags.file, id);
  if (flags.json) out(JSON.stringify(publicRecord(record)));
  else out(`revoked ${record.id} (nodes refuse it within a second)`);
}
