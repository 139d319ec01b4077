// Hosts' secrets bundles in the fleet's store (ciphertexts only), for the modes whose hosts
// fetch them (agent; ssm through a presigned URL): `secrets/HOST/SHA256`, content-addressed,
// so a release or a command names exactly one bundle, and a bundle changed in the store is
// refused by its digest.
import { createHash } from "node:crypto";
import { InputError, NixshipError } from "../errors.js";
import { MAX_SECRETS_BUNDLE } from "../host/secrets-bundle.js";
import type { Release } from "../release/release.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";

export const secretsBundleKey = (host: string, sha256: string) => `secrets/${host}/${sha256}`;

const sha256Hex = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** A bundle's sha256 (hex): its key's last part, and what a host checks what it got against. */
export const bundleSha256 = (bundle: string): string => sha256Hex(bundle);

/**
 * Stores the host's bundle (unless that very bundle is there) and returns its sha256. What is
 * at the key is read and checked, not only seen: a copy changed in the store is replaced, so
 * publishing again repairs it. `fresh`: put it all the same, so that it counts as written now
 * (`cache gc` keeps a bundle no release names for its grace period: an ssm host fetches its
 * bundle by a presigned URL, up to 12 hours on, and no release names it).
 */
export async function putSecretsBundle(
  store: ObjectStore,
  host: string,
  bundle: string,
  { fresh = false }: { readonly fresh?: boolean } = {},
): Promise<string> {
  const sha256 = sha256Hex(bundle);
  const key = secretsBundleKey(host, sha256);
  if (fresh) {
    const bytes = Buffer.from(bundle);
    await store.put(key, bytes, { size: bytes.length, contentType: "text/plain" });
    return sha256;
  }
  const there = await readAll(store, key, MAX_SECRETS_BUNDLE).catch((err: unknown) => {
    // Larger than any bundle: not the one named, so it is replaced.
    if (err instanceof NixshipError && err.code === "object-too-large") return undefined;
    throw err;
  });
  if (there === undefined || sha256Hex(there) !== sha256) {
    const bytes = Buffer.from(bundle);
    await store.put(key, bytes, { size: bytes.length, contentType: "text/plain" });
  }
  return sha256;
}

/** Adds to `into` the key of every bundle the release names. */
export function addBundleKeys(into: Set<string>, release: Release): void {
  for (const [host, entry] of Object.entries(release.hosts)) {
    if (entry.secrets !== undefined) into.add(secretsBundleKey(host, entry.secrets.bundle));
  }
}

/** The bundle a release names for the host, refused unless its sha256 is the one named. */
export async function getSecretsBundle(
  store: ObjectStore,
  host: string,
  sha256: string,
): Promise<string> {
  const key = secretsBundleKey(host, sha256);
  const bytes = await readAll(store, key, MAX_SECRETS_BUNDLE);
  if (bytes === undefined) {
    throw new InputError("secrets-bundle-missing", `the secrets bundle ${key} is not in the store`);
  }
  const found = sha256Hex(bytes);
  if (found !== sha256) {
    throw new InputError(
      "secrets-bundle-mismatch",
      `the secrets bundle ${key} has sha256 ${found}, not the ${sha256} its release signed: refused`,
      { hint: "the store's copy was changed; publish the release again from the fleet" },
    );
  }
  return bytes.toString("utf8");
}
