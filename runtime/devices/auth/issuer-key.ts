/**
 * The auth callout's issuer account key, signing with Node's native Ed25519.
 *
 * `@nats-io/nkeys` signs in JavaScript (tweetnacl) and derives the key pair from the seed again on
 * every `getPublicKey`, `getPrivateKey` and `sign`; `@nats-io/jwt` calls several of those per
 * JWT. Answering one connecting device (a user JWT and the authorization response) took ~80 ms of
 * the node's CPU that way (`npm run bench:ingest-auth`). This key pair derives once and signs with
 * `node:crypto` (the same Ed25519 signature: it is deterministic), so the JWTs are unchanged.
 */
import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { fromSeed, type KeyPair } from "@nats-io/nkeys";

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
