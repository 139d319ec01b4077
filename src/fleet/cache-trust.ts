// Whether what a secret key signs would be trusted by the fleet: its public half must be one
// of the fleet's cache.publicKeys (or releases.publicKeys), or all it signs is refused.
import { InputError } from "../errors.js";
import { formatPublicKey, publicKeyOf, type SecretKey } from "../nix/keys.js";

/** Whose trust a key needs: the hosts' for the cache, the agents' for releases. */
const TRUSTED_BY = {
  "cache.publicKeys": { who: "hosts", what: "path" },
  "releases.publicKeys": { who: "agents", what: "release" },
} as const;

/**
 * Throws `untrusted-signing-key` unless `key`'s public half is one of `trusted` (the fleet's
 * `field`, `source` naming the fleet file). The message names both sides.
 */
export function requireTrustedSigningKey(
  key: SecretKey,
  trusted: readonly string[],
  source: string,
  field: keyof typeof TRUSTED_BY = "cache.publicKeys",
): void {
  const own = formatPublicKey(publicKeyOf(key));
  if (trusted.includes(own)) return;
  const sameName = trusted.find((k) => k.startsWith(`${key.name}:`));
  const { who, what } = TRUSTED_BY[field];
  throw new InputError(
    "untrusted-signing-key",
    `the signing key '${key.name}' (public key ${own}) is not in ${source} ${field} (${trusted.join(", ") || "none"})${sameName === undefined ? "" : `: a key of that name is there with another public half`}; ${who} would refuse every ${what} it signs`,
    {
      hint: `sign with the secret half of a key the fleet trusts, or add ${own} to ${field} first (the ${who} must trust it before it signs anything)`,
    },
  );
}
