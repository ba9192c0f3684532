/**
 * API keys: what a service presents as `authorization: Bearer <key>`. A key is
 * `dpk_<id>_<secret>`: a public id (12 hex digits, shown by `doppel keys list`, recorded in the
 * audit trail) and 32 random bytes (base64url). Only the SHA-256 of the secret is kept — the
 * secret has 256 bits of entropy, so a slow password hash would add nothing — and it is shown
 * once, when the key is created.
 *
 * Keys live in a keys file (JSON, written atomically, mode 0600), not in the event store: the same
 * file serves a SQLite node and a Cassandra cluster, an operator can ship it as a Kubernetes Secret
 * to every node, and the node notices a changed file (a revoked key) within a second without a
 * restart. See docs/security.md.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { z } from "zod";
import type { Clock } from "../core/clock.ts";
import { describeIssues } from "../core/config-issues.ts";
import { FailedPrecondition, InvalidArgument, NotFound, Unauthenticated } from "../core/errors.ts";
import { present } from "../core/present.ts";
import { grantPrincipal, type Principal, SCOPES, type Scope } from "../core/principal.ts";

const KEY_PATTERN = /^dpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
/** Longest credential looked at; anything longer is refused before any work. */
export const MAX_TOKEN_CHARS = 256;

/** Per-key limits: a token bucket of calls, and a quota of twins created. */
export const keyLimitsSchema = z
  .object({
    /** Calls per second, sustained. */
    ratePerSecond: z.number().positive().max(1_000_000).optional(),
    /** Calls allowed in a burst (bucket size); default: one second's worth, at least 1. */
    burst: z.number().int().min(1).max(10_000_000).optional(),
    /**
     * Most twins the key may create (a write that brings a twin into existence: its first event).
     * Counted durably in the event store, shared by every node; absent: not counted, no limit.
     */
    maxTwins: z.number().int().min(0).max(1_000_000_000).optional(),
  })
  .strict();

const keyRecordSchema = z
  .object({
    id: z.string().regex(/^[0-9a-f]{12}$/),
    /** Hex SHA-256 of the secret part. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    scopes: z.array(z.enum(SCOPES)).min(1),
    types: z.array(z.string().min(1)).optional(),
    idPrefixes: z.array(z.string().min(1)).optional(),
    limits: keyLimitsSchema.optional(),
    description: z.string().max(200).optional(),
    createdAt: z.number().int(),
    revokedAt: z.number().int().optional(),
  })
  .strict();

const keysFileSchema = z.object({ version: z.literal(1), keys: z.array(keyRecordSchema) }).strict();

export type ApiKeyRecord = z.infer<typeof keyRecordSchema>;
export type ApiKeyLimits = z.infer<typeof keyLimitsSchema>;
export type KeysFile = z.infer<typeof keysFileSchema>;

/** What `doppel keys create` asks for. */
export interface KeySpec {
  readonly scopes: readonly Scope[];
  readonly types?: readonly string[];
  readonly idPrefixes?: readonly string[];
  readonly limits?: ApiKeyLimits;
  readonly description?: string;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Reads a keys file; a missing file is an empty one. `InvalidArgument` names what is wrong. */
export function readKeysFile(path: string): KeysFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, keys: [] };
    throw new InvalidArgument(`cannot read API keys file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgument(`API keys file ${path} is not JSON: ${(error as Error).message}`);
  }
  const parsed = keysFileSchema.safeParse(value);
  if (!parsed.success)
    throw new InvalidArgument(`API keys file ${path}: ${describeIssues(parsed.error, "")}`);
  return parsed.data;
}

/** Writes a keys file atomically (temporary file, then rename), readable by its owner only. */
export function writeKeysFile(path: string, file: KeysFile): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}

/** Creates a key in the file; returns the key (the only time its secret is seen) and its record. */
export function createKey(
  path: string,
  spec: KeySpec,
  now = Date.now(),
): { key: string; record: ApiKeyRecord } {
  const file = readKeysFile(path);
  const id = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const record = keyRecordSchema.parse({
    id,
    sha256: sha256(secret).toString("hex"),
    scopes: [...new Set(spec.scopes)],
    ...(spec.types ? { types: [...spec.types] } : {}),
    ...(spec.idPrefixes ? { idPrefixes: [...spec.idPrefixes] } : {}),
    ...(spec.limits && Object.keys(spec.limits).length > 0 ? { limits: spec.limits } : {}),
    ...(spec.description ? { description: spec.description } : {}),
    createdAt: now,
  });
  writeKeysFile(path, { version: 1, keys: [...file.keys, record] });
  return { key: `dpk_${id}_${secret}`, record };
}

/** Marks a key revoked (kept in the file, so the audit trail's key ids stay explained). */
export function revokeKey(path: string, id: string, now = Date.now()): ApiKeyRecord {
  const file = readKeysFile(path);
  const record = file.keys.find((key) => key.id === id);
  if (record === undefined) throw new NotFound(`no API key ${JSON.stringify(id)} in ${path}`);
  if (record.revokedAt !== undefined) return record;
  const revoked = { ...record, revokedAt: now };
  writeKeysFile(path, { version: 1, keys: file.keys.map((key) => (key.id === id ? revoked : key)) });
  return revoked;
}

/**
 * A change to a key's policy (`doppel keys update`): a field present replaces the key's, `null`
 * removes it (no type or prefix restriction, no rate of its own, no quota); absent keeps it.
 */
export interface KeyChange {
  readonly scopes?: readonly Scope[];
  readonly types?: readonly string[] | null;
  readonly idPrefixes?: readonly string[] | null;
  readonly limits?: { readonly [K in keyof ApiKeyLimits]?: ApiKeyLimits[K] | null };
  readonly description?: string | null;
}

/** `next` over `current`: absent keeps `current`, `null` removes it. */
function changed<T>(current: T | undefined, next: T | null | undefined): T | undefined {
  if (next === undefined) return current;
  return next === null ? undefined : next;
}

/**
 * Changes an active key's scopes, restrictions, limits or description in place (its secret and
 * id stay, so services need no new key). Nodes pick the change up as they do a revocation.
 * `NotFound` for an unknown key, `FailedPrecondition` for a revoked one, `InvalidArgument` for a
 * change the file would not accept (names the field).
 */
export function updateKey(path: string, id: string, change: KeyChange): ApiKeyRecord {
  const file = readKeysFile(path);
  const record = file.keys.find((key) => key.id === id);
  if (record === undefined) throw new NotFound(`no API key ${JSON.stringify(id)} in ${path}`);
  if (record.revokedAt !== undefined)
    throw new FailedPrecondition(`API key ${id} was revoked; create a new key instead`);
  const limits = present({
    ratePerSecond: changed(record.limits?.ratePerSecond, change.limits?.ratePerSecond),
    burst: changed(record.limits?.burst, change.limits?.burst),
    maxTwins: changed(record.limits?.maxTwins, change.limits?.maxTwins),
  });
  const parsed = keyRecordSchema.safeParse(
    present({
      ...record,
      scopes: change.scopes ? [...new Set(change.scopes)] : record.scopes,
      types: changed(record.types, change.types && [...change.types]),
      idPrefixes: changed(record.idPrefixes, change.idPrefixes && [...change.idPrefixes]),
      limits: Object.keys(limits).length > 0 ? limits : undefined,
      description: changed(record.description, change.description),
    }),
  );
  if (!parsed.success) throw new InvalidArgument(`API key ${id}: ${describeIssues(parsed.error, "")}`);
  writeKeysFile(path, { version: 1, keys: file.keys.map((key) => (key.id === id ? parsed.data : key)) });
  return parsed.data;
}

/** An authenticated key: its principal and its limits. */
export interface AuthenticatedKey {
  readonly principal: Principal;
  readonly limits: ApiKeyLimits | undefined;
}

/**
 * The keys a node accepts, read from its keys file and re-read when the file changes (checked at
 * most once per `recheckMs`, on use). A file that turns unreadable or invalid keeps the last good
 * keys and is reported through `onReloadError`.
 */
export class ApiKeys {
  #byId = new Map<string, ApiKeyRecord>();
  #checkedAt = Number.NEGATIVE_INFINITY;
  #signature = "";

  constructor(
    readonly path: string,
    private readonly clock: Clock,
    private readonly options: { recheckMs?: number; onReloadError?: (error: Error) => void } = {},
  ) {
    this.#load(true);
  }

  /** How many keys are active (not revoked). */
  get activeCount(): number {
    this.#maybeReload();
    let count = 0;
    for (const key of this.#byId.values()) if (key.revokedAt === undefined) count++;
    return count;
  }

  #load(initial: boolean): void {
    let signature: string;
    try {
      const stat = statSync(this.path);
      signature = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch {
      signature = "missing";
    }
    if (!initial && signature === this.#signature) return;
    try {
      const file = readKeysFile(this.path);
      this.#byId = new Map(file.keys.map((key) => [key.id, key]));
      this.#signature = signature;
    } catch (error) {
      if (initial) throw error;
      this.options.onReloadError?.(error as Error);
    }
  }

  #maybeReload(): void {
    const now = this.clock.now();
    if (now - this.#checkedAt < (this.options.recheckMs ?? 1000)) return;
    this.#checkedAt = now;
    this.#load(false);
  }

  /** The key's principal; `Unauthenticated` for a malformed, unknown or revoked key. Never throws anything else. */
  authenticate(token: string): AuthenticatedKey {
    if (token.length === 0) throw new Unauthenticated("empty API key");
    if (token.length > MAX_TOKEN_CHARS) {
      throw new Unauthenticated(`malformed API key: longer than ${MAX_TOKEN_CHARS} characters`);
    }
    const match = KEY_PATTERN.exec(token);
    if (match === null) throw new Unauthenticated("malformed API key: expected dpk_<id>_<secret>");
    const [, id = "", secret = ""] = match;
    this.#maybeReload();
    const record = this.#byId.get(id);
    if (record === undefined || !timingSafeEqual(sha256(secret), Buffer.from(record.sha256, "hex"))) {
      throw new Unauthenticated("unknown API key");
    }
    if (record.revokedAt !== undefined) throw new Unauthenticated(`API key ${id} was revoked`);
    return {
      principal: grantPrincipal("service-key", id, record),
      limits: record.limits,
    };
  }
}
