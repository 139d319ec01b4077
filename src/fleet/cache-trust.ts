// Whether what a secret key signs would be trusted by the fleet's hosts: its public half must
// be one of the fleet's cache.publicKeys, or every path it signs is refused on arrival.
import { InputError } from "../errors.js";
import { formatPublicKey, publicKeyOf, type SecretKey } from "../nix/keys.js";

/**
 * Throws `untrusted-signing-key` unless `key`'s public half is one of `trusted` (the fleet's
 * cache.publicKeys, `source` naming the fleet file). The message names both sides.
 */
export function requireTrustedSigningKey(
  key: SecretKey,
  trusted: readonly string[],
  source: string,
): void {
  const own = formatPublicKey(publicKeyOf(key));
  if (trusted.includes(own)) return;
  const sameName = trusted.find((k) => k.startsWith(`${key.name}:`));
  throw new InputError(
    "untrusted-signing-key",
    `the signing key '${key.name}' (public key ${own}) is not in ${source} cache.publicKeys (${trusted.join(", ") || "none"})${sameName === undefined ? "" : `: a key of that name is there with another public half`}; hosts would refuse every path it signs`,
    {
      hint: `sign with the secret half of a key the fleet trusts, or add ${own} to cache.publicKeys first (the hosts must trust it before it signs anything)`,
    },
  );
}
