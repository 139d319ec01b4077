import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { requireTrustedSigningKey } from "./cache-trust.js";

const trustedKey = generateSecretKey("cache-1");
const trusted = [formatPublicKey(publicKeyOf(trustedKey))];

describe("requireTrustedSigningKey", () => {
  it("accepts a key whose public half the fleet trusts", () => {
    expect(() => requireTrustedSigningKey(trustedKey, trusted, "nixship.json")).not.toThrow();
  });

  it("refuses another key, naming both public keys", () => {
    const other = generateSecretKey("cache-2");
    const own = formatPublicKey(publicKeyOf(other));
    const err = (() => {
      try {
        requireTrustedSigningKey(other, trusted, "nixship.json");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe("untrusted-signing-key");
    expect((err as InputError).message).toBe(
      `the signing key 'cache-2' (public key ${own}) is not in nixship.json cache.publicKeys (${trusted[0]}); hosts would refuse every path it signs`,
    );
  });

  it("says so when a key of the same name has another public half", () => {
    const impostor = generateSecretKey("cache-1");
    expect(() => requireTrustedSigningKey(impostor, trusted, "nixship.json")).toThrow(
      "a key of that name is there with another public half",
    );
  });
});
