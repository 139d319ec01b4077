// Hosts' SSH host keys as their agents publish them, under each host's own status prefix
// (`status/host-keys/HOST.pub`, which only that host's role may write), so that `nixship
// secrets rekey` can encrypt to a new host that the fleet file gives no `hostKey`.
import { canonicalHostKey } from "../age/host-key.js";
import { InputError } from "../errors.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";

/** A host key line is short; anything longer is not one. */
const MAX_HOST_KEY = 4096;

export const hostKeyObjectKey = (host: string) => `status/host-keys/${host}.pub`;

/**
 * Stores the host's key unless the same key is there already. An object there too large to be
 * a key is no key: it is replaced (the prefix is the host's own).
 */
export async function publishHostKey(
  store: ObjectStore,
  host: string,
  key: string,
): Promise<"published" | "unchanged"> {
  const objectKey = hostKeyObjectKey(host);
  const stored = await readAll(store, objectKey, MAX_HOST_KEY).catch((err: unknown) => {
    if (err instanceof InputError && err.code === "object-too-large") return undefined;
    throw err;
  });
  if (stored?.toString("utf8").trim() === key) return "unchanged";
  const bytes = Buffer.from(`${key}\n`);
  await store.put(objectKey, bytes, { size: bytes.length, contentType: "text/plain" });
  return "published";
}

/** The key the host's agent published, or undefined when there is none (or it is not a key). */
export async function readPublishedHostKey(
  store: ObjectStore,
  host: string,
): Promise<string | undefined> {
  const read = await readPublishedHostKeyObject(store, host);
  return read?.key;
}

/**
 * What the host's object holds: its key, or why that is no usable key (not an ssh-ed25519
 * public key, several lines); undefined when there is no object.
 */
export async function readPublishedHostKeyObject(
  store: ObjectStore,
  host: string,
): Promise<
  { readonly key: string } | { readonly key?: undefined; readonly unusable: string } | undefined
> {
  const bytes = await readAll(store, hostKeyObjectKey(host), MAX_HOST_KEY);
  if (bytes === undefined) return undefined;
  try {
    return { key: canonicalHostKey(bytes.toString("utf8"), hostKeyObjectKey(host)) };
  } catch (err) {
    if (err instanceof InputError) return { unusable: err.message };
    throw err;
  }
}
