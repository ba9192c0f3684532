import { decode, encodeUser } from "@nats-io/jwt";
import { createAccount, createUser, fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { decodeVerified, issuerKey } from "../../runtime/devices/auth/ed25519.ts";

describe("native Ed25519 for the auth callout's JWTs", () => {
  const seed = new TextDecoder().decode(createAccount().getSeed());
  const nkeys = fromSeed(new TextEncoder().encode(seed));
  const fast = issuerKey(seed);

  it("has the seed's public key and signs exactly as @nats-io/nkeys does", () => {
    expect(fast.getPublicKey()).toBe(nkeys.getPublicKey());
    for (const text of ["", "a", "doppel.dev.thermostat.t1.reported", "x".repeat(5000)]) {
      const input = new TextEncoder().encode(text);
      const signature = fast.sign(input);
      expect(Buffer.from(signature).toString("hex")).toBe(Buffer.from(nkeys.sign(input)).toString("hex"));
      expect(nkeys.verify(input, signature)).toBe(true);
    }
  });

  it("a user JWT it signs verifies and names it as the issuer", async () => {
    const user = createUser().getPublicKey();
    const jwt = await encodeUser("thermostat/t1", user, fast, { pub: { allow: ["a"] } }, { aud: "DOPPEL" });
    const claims = decode(jwt);
    expect(claims.iss).toBe(nkeys.getPublicKey());
    expect(claims.sub).toBe(user);
  });

  it("decodeVerified accepts what @nats-io/jwt's decode accepts and refuses a tampered or foreign JWT", async () => {
    const user = createUser().getPublicKey();
    const jwt = await encodeUser("thermostat/t1", user, nkeys, { pub: { allow: ["a"] } }, { aud: "DOPPEL" });
    expect(decodeVerified(jwt)).toEqual(decode(jwt));
    const [head, body, signature] = jwt.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
    const forged = Buffer.from(JSON.stringify({ ...claims, name: "thermostat/t2" })).toString("base64url");
    expect(() => decodeVerified(`${head}.${forged}.${signature}`)).toThrow(/sig verification failed/);
    // Signed by another account that claims to be this issuer.
    const other = await encodeUser("thermostat/t1", user, createAccount(), { pub: { allow: ["a"] } });
    const [, otherBody, otherSignature] = other.split(".") as [string, string, string];
    const impostor = JSON.parse(Buffer.from(otherBody, "base64url").toString("utf8"));
    const renamed = Buffer.from(JSON.stringify({ ...impostor, iss: claims.iss })).toString("base64url");
    expect(() => decodeVerified(`${head}.${renamed}.${otherSignature}`)).toThrow(/sig verification failed/);
    expect(() => decodeVerified("a.b")).toThrow(/chunks/);
    expect(() =>
      decodeVerified(`${head}.${Buffer.from('{"iss":"Axyz"}').toString("base64url")}.${signature}`),
    ).toThrow();
  });
});
