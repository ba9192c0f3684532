/**
 * Device credentials: one secret per twin (`type/id`), issued once by `doppel devices provision`,
 * kept only as a SHA-256 hash in a JSON file the node reads (`nats.deviceAuth.credentialsFile`).
 * A device connects with user name `type/id` and the secret as its password (NATS and MQTT alike).
 *
 * The secret is 32 random bytes, so a fast hash is enough: there is nothing to guess a dictionary
 * for, and verifying stays cheap on every connect. Revoking keeps the record (with `revokedAt`) so
 * `doppel devices list` shows it; provisioning a revoked device again issues a new secret and keeps
 * when the old one was revoked (`previousRevokedAt`), so the cloud's nodes still tell the edges
 * about that revocation (cloud-revocation.ts) even if none of them saw it happen.
 *
 * At an edge the credentials are also checked against the revocations learnt from the cloud
 * (`cloudRevocations`): a credential the cloud revoked is refused as `revoked-in-cloud`.
 *
 * The file is rewritten atomically (a temporary file renamed over it) and re-read by the node
 * whenever its modification time or size changes, so the CLI and the node share it without a lock.
 * A node never writes it.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { FailedPrecondition, InvalidArgument, NotFound } from "../../core/errors.ts";
import { parseRef, refKey, type TwinRef } from "../../core/ids.ts";
import type { RevocationList } from "./cloud-revocation.ts";

/** What the file keeps of one device (never the secret). */
export interface DeviceCredentialRecord {
  /** `type/id`: the device's NATS and MQTT user name. */
  readonly device: string;
  /** `sha256:<hex>` of the secret. */
  readonly hash: string;
  readonly createdAt: string;
  readonly revokedAt?: string;
  /** When the credential this one replaced was revoked (a device provisioned again). */
  readonly previousRevokedAt?: string;
}

/** A credential as issued: shown once, never stored. */
export interface IssuedDeviceCredential {
  readonly user: string;
  readonly password: string;
}

const fileSchema = z.object({
  version: z.literal(1),
  devices: z.record(
    z.string(),
    z.object({
      hash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
      createdAt: z.string(),
      revokedAt: z.string().optional(),
      previousRevokedAt: z.string().optional(),
    }),
  ),
});
type CredentialFile = z.infer<typeof fileSchema>;

/** Longest password looked at: anything longer is refused before hashing. */
export const MAX_SECRET_LENGTH = 256;
const SECRET_PREFIX = "dpd_";

function hashSecret(secret: string): string {
  return `sha256:${createHash("sha256").update(secret, "utf8").digest("hex")}`;
}

/** The outcome of checking a credential: the device, or why it is refused (for logs and metrics). */
export type CredentialCheck =
  | { readonly ok: true; readonly ref: TwinRef }
  | {
      readonly ok: false;
      readonly reason: "malformed" | "unknown" | "revoked" | "revoked-in-cloud" | "wrong-secret";
    };

/** The credentials file (see the module comment). */
export class DeviceCredentials {
  readonly #path: string;
  readonly #cloud: RevocationList | undefined;
  #file: CredentialFile = { version: 1, devices: {} };
  #stamp = "";

  /** `cloudRevocations`: at an edge, the cloud's revocations it learnt (refused beside the file's own). */
  constructor(path: string, cloudRevocations?: RevocationList) {
    this.#path = path;
    this.#cloud = cloudRevocations;
  }

  get path(): string {
    return this.#path;
  }

  /** Reads the file again if it changed; a missing file holds no devices. Throws on a corrupt file. */
  #load(): CredentialFile {
    let stamp: string;
    try {
      const stat = statSync(this.#path);
      stamp = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch {
      this.#file = { version: 1, devices: {} };
      this.#stamp = "";
      return this.#file;
    }
    if (stamp === this.#stamp) return this.#file;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.#path, "utf8"));
    } catch (error) {
      throw new InvalidArgument(`device credentials file ${this.#path}: ${(error as Error).message}`);
    }
    const result = fileSchema.safeParse(parsed);
    if (!result.success) {
      throw new InvalidArgument(`device credentials file ${this.#path} is not a Doppel credentials file`);
    }
    this.#file = result.data;
    this.#stamp = stamp;
    return this.#file;
  }

  #save(file: CredentialFile): void {
    mkdirSync(dirname(this.#path), { recursive: true });
    const temporary = `${this.#path}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, this.#path);
    this.#stamp = "";
  }

  /**
   * Issues a new secret for `ref`. Refuses with `FailedPrecondition` while the device holds an active
   * credential (revoke it first); a revoked device gets a fresh one.
   */
  provision(ref: TwinRef, now = new Date()): IssuedDeviceCredential {
    const file = this.#load();
    const device = refKey(ref);
    const existing = file.devices[device];
    if (existing && existing.revokedAt === undefined) {
      throw new FailedPrecondition(`device ${device} already has a credential; revoke it first`);
    }
    const password = `${SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
    const previousRevokedAt = existing?.revokedAt ?? existing?.previousRevokedAt;
    this.#save({
      ...file,
      devices: {
        ...file.devices,
        [device]: {
          hash: hashSecret(password),
          createdAt: now.toISOString(),
          ...(previousRevokedAt !== undefined ? { previousRevokedAt } : {}),
        },
      },
    });
    return { user: device, password };
  }

  /** Revokes `ref`'s credential; `NotFound` if it has none. Returns false if it was already revoked. */
  revoke(ref: TwinRef, now = new Date()): boolean {
    const file = this.#load();
    const device = refKey(ref);
    const existing = file.devices[device];
    if (!existing) throw new NotFound(`device ${device} has no credential`);
    if (existing.revokedAt !== undefined) return false;
    this.#save({
      ...file,
      devices: { ...file.devices, [device]: { ...existing, revokedAt: now.toISOString() } },
    });
    return true;
  }

  /** Every device with a credential, active or revoked, by name. */
  list(): DeviceCredentialRecord[] {
    const file = this.#load();
    return Object.entries(file.devices)
      .map(([device, record]) => ({ device, ...record }))
      .sort((a, b) => a.device.localeCompare(b.device));
  }

  /** `device`'s record (`type/id`), if it has one. */
  record(device: string): DeviceCredentialRecord | undefined {
    const record = this.#load().devices[device];
    return record && { device, ...record };
  }

  /** True when `device` (`type/id`) holds a credential that is not revoked. */
  isActive(device: string): boolean {
    const record = this.#load().devices[device];
    return record !== undefined && record.revokedAt === undefined;
  }

  /** Checks a user name and password; never throws for bad input (a corrupt file does throw). */
  check(user: unknown, password: unknown): CredentialCheck {
    if (typeof user !== "string" || typeof password !== "string") return { ok: false, reason: "malformed" };
    if (password.length === 0 || password.length > MAX_SECRET_LENGTH || user.length > 256) {
      return { ok: false, reason: "malformed" };
    }
    let ref: TwinRef;
    try {
      ref = parseRef(user);
    } catch {
      return { ok: false, reason: "malformed" };
    }
    const record = this.#load().devices[refKey(ref)];
    if (!record) return { ok: false, reason: "unknown" };
    const expected = Buffer.from(record.hash, "utf8");
    const actual = Buffer.from(hashSecret(password), "utf8");
    const matches = expected.length === actual.length && timingSafeEqual(expected, actual);
    if (!matches) return { ok: false, reason: "wrong-secret" };
    if (record.revokedAt !== undefined) return { ok: false, reason: "revoked" };
    if (this.#cloud?.revokes(refKey(ref), record.createdAt)) return { ok: false, reason: "revoked-in-cloud" };
    return { ok: true, ref };
  }
}
