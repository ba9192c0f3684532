/**
 * A device revocation made in the cloud, as it travels to the edges (docs/security.md,
 * "Revocation at the edges"). Cloud nodes publish one record per device into the hub's stream
 * `DOPPEL_REVOCATIONS` (subject `doppel.revocations.<type>.<id>`, one message per subject); each
 * edge copies that stream into its own domain (devices/edge/revocation-feed.ts) and refuses what a record revokes.
 *
 * **The rule.** A record says "the cloud revoked this device's credentials at `revokedAt`": at
 * every edge, a credential of that device created at or before `revokedAt` is refused, whatever
 * the edge's own file says. A credential created later (the device re-provisioned in the cloud
 * and the cloud's file copied to the edge, or provisioned again at the edge) is not affected: that
 * is how a revocation is lifted. After a re-provisioning in the cloud the record stays, with
 * `reprovisionedAt` (the new credential's creation time) added, so an edge that learns it late
 * still refuses the old credential. The rule only ever compares an edge credential's own
 * creation time with the record: the old, revoked secret never works again anywhere.
 */
import { z } from "zod";
import { InvalidArgument } from "../../core/errors.ts";
import { parseRef, refKey, type TwinRef } from "../../core/ids.ts";

/** The hub's stream of revocations (and each edge's copy of it, by the same name). */
export const REVOCATIONS_STREAM = "DOPPEL_REVOCATIONS";
/** Subjects of the records: `doppel.revocations.<type>.<id>`. */
export const REVOCATIONS_PREFIX = "doppel.revocations";
/** Largest record an edge reads; anything bigger is malformed. */
export const MAX_RECORD_BYTES = 1024;

/** One device's revocation in the cloud. */
export interface CloudRevocation {
  /** `type/id`. */
  readonly device: string;
  /** When the cloud last revoked the device (ISO 8601): credentials created until then are refused. */
  readonly revokedAt: string;
  /** When the cloud issued the device a new credential after that revocation, if it did. */
  readonly reprovisionedAt?: string;
}

const isoTime = z.string().refine((text) => Number.isFinite(Date.parse(text)), "must be an ISO 8601 time");
const recordSchema = z
  .object({ device: z.string().max(300), revokedAt: isoTime, reprovisionedAt: isoTime.optional() })
  .strict();

/** The subject of `ref`'s record. */
export function revocationSubject(ref: TwinRef): string {
  return `${REVOCATIONS_PREFIX}.${ref.type}.${ref.id}`;
}

/** The record as published. */
export function encodeRevocation(record: CloudRevocation): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(record));
}

/**
 * Reads a record taken from the stream, checking everything: size, JSON, fields, a valid device
 * whose subject it came on, `reprovisionedAt` after `revokedAt`. `InvalidArgument` saying what is
 * wrong otherwise.
 */
export function decodeRevocation(subject: string, data: Uint8Array): CloudRevocation {
  if (data.byteLength > MAX_RECORD_BYTES)
    throw new InvalidArgument(`revocation record of ${data.byteLength} bytes (at most ${MAX_RECORD_BYTES})`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new InvalidArgument("revocation record is not JSON");
  }
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidArgument(`revocation record: ${issue?.path.join(".") || "record"}: ${issue?.message}`);
  }
  const record = parsed.data;
  let ref: TwinRef;
  try {
    ref = parseRef(record.device);
  } catch {
    throw new InvalidArgument(`revocation record: device ${JSON.stringify(record.device)} is not type/id`);
  }
  if (revocationSubject(ref) !== subject)
    throw new InvalidArgument(`revocation record of ${refKey(ref)} came on subject ${subject}`);
  if (
    record.reprovisionedAt !== undefined &&
    Date.parse(record.reprovisionedAt) <= Date.parse(record.revokedAt)
  )
    throw new InvalidArgument(`revocation record of ${refKey(ref)}: reprovisionedAt is not after revokedAt`);
  return {
    device: refKey(ref),
    revokedAt: record.revokedAt,
    ...(record.reprovisionedAt !== undefined ? { reprovisionedAt: record.reprovisionedAt } : {}),
  };
}

/** Whether `record` refuses a credential of its device created at `createdAt` (see the rule above). */
export function revokesCredential(record: CloudRevocation, createdAt: string): boolean {
  const created = Date.parse(createdAt);
  // A credential whose creation time cannot be read is refused: it cannot be shown to be newer.
  return !Number.isFinite(created) || created <= Date.parse(record.revokedAt);
}

/** Of two records of one device, the one with the later revocation (the later one on a tie). */
export function laterRevocation(a: CloudRevocation | undefined, b: CloudRevocation): CloudRevocation {
  if (!a) return b;
  return Date.parse(b.revokedAt) >= Date.parse(a.revokedAt) ? b : a;
}

/** What the edges consult: the cloud's revocations the edge has learnt. */
export interface RevocationList {
  /** Whether a credential of `device` created at `createdAt` is revoked by the cloud. */
  revokes(device: string, createdAt: string): boolean;
}
