/**
 * Native Ed25519 for the auth callout's JWTs: signing with the issuer account key, and checking
 * the server's signature on an authorization request.
 *
 * `@nats-io/nkeys` signs in JavaScript (tweetnacl) and derives the key pair from the seed again on
 * every `getPublicKey`, `getPrivateKey` and `sign`; `@nats-io/jwt` calls several of those per
 * JWT. Answering one connecting device (a user JWT and the authorization response) took ~80 ms of
 * the node's CPU that way (`npm run bench:ingest-auth`). This key pair derives once and signs with
 * `node:crypto` (the same Ed25519 signature: it is deterministic), so the JWTs are unchanged.
 * Checking the request's signature with `@nats-io/jwt`'s `decode` took another ~11 ms;
 * {@link decodeVerified} does the same checks natively.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { fromPublic, fromSeed, type KeyPair } from "@nats-io/nkeys";

/** SPKI DER prefix of an Ed25519 public key; the 32-byte key follows (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** The key pair of account seed `seed` (`SA...`), with native signing and its keys derived once. */
export function issuerKey(seed: string): KeyPair {
  const slow = fromSeed(new TextEncoder().encode(seed));
  const publicKey = slow.getPublicKey();
  const privateKey = slow.getPrivateKey();
  const raw = decodePrivate(slow);
  const native: KeyObject = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, raw]),
    format: "der",
    type: "pkcs8",
  });
  return {
    getPublicKey: () => publicKey,
    getPrivateKey: () => privateKey,
    getSeed: () => slow.getSeed(),
    sign: (input) => new Uint8Array(sign(null, input, native)),
    verify: (input, sig) => slow.verify(input, sig),
    clear: () => slow.clear(),
    seal: (...args) => slow.seal(...args),
    open: (...args) => slow.open(...args),
  };
}

/** The 32-byte Ed25519 seed of an nkey key pair. */
function decodePrivate(kp: KeyPair): Buffer {
  const { getRawSeed } = kp as KeyPair & { getRawSeed?: () => Uint8Array };
  if (typeof getRawSeed !== "function") throw new Error("nkeys: key pair without a raw seed");
  return Buffer.from(getRawSeed.call(kp));
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding (how nkeys are written). */
function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    const digit = BASE32.indexOf(char);
    if (digit < 0) throw new Error("nkey: not base32");
    value = (value << 5) | digit;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The Ed25519 key of a public nkey (`N...`, `A...`): its checksum is checked by `fromPublic`. */
function publicKeyObject(nkey: string): KeyObject {
  fromPublic(nkey); // throws on a bad prefix or checksum
  const raw = base32Decode(nkey).subarray(1, 33);
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/**
 * The claims of a NATS JWT after the checks `@nats-io/jwt`'s `decode` makes: three parts, a
 * `jwt` type, a NATS algorithm, and a valid Ed25519 signature by the key named in `iss`. Throws
 * otherwise.
 */
export function decodeVerified<T>(jwt: string): { iss: string; nats: T } & Record<string, unknown> {
  const chunks = jwt.split(".");
  if (chunks.length !== 3) throw new Error(`invalid jwt - ${chunks.length} chunks`);
  const [head, body, signature] = chunks as [string, string, string];
  const header = JSON.parse(Buffer.from(head, "base64url").toString("utf8")) as {
    typ?: string;
    alg?: string;
  };
  if (header.typ !== "jwt" && header.typ !== "JWT") throw new Error("not a nats jwt");
  if (header.alg !== "ed25519-nkey" && header.alg !== "ed25519") throw new Error("not a nats jwt");
  const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as { iss: string; nats: T };
  if (typeof claims?.iss !== "string") throw new Error("jwt without an issuer");
  const payload = header.alg === "ed25519-nkey" ? `${head}.${body}` : body;
  const ok = verify(
    null,
    Buffer.from(payload),
    publicKeyObject(claims.iss),
    Buffer.from(signature, "base64url"),
  );
  if (!ok) throw new Error("sig verification failed");
  return claims as { iss: string; nats: T } & Record<string, unknown>;
}
