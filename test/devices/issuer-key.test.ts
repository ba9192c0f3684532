import { decode, encodeUser } from "@nats-io/jwt";
import { createAccount, createUser, fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { issuerKey } from "../../runtime/devices/auth/issuer-key.ts";

describe("issuerKey (native Ed25519 signing of the auth callout's JWTs)", () => {
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
});
