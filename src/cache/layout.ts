// Where the objects of a Nix binary cache live in the store: the layout stock Nix expects.

import type { Sha256 } from "../nix/hash.js";
import { type Compression, NAR_EXTENSION } from "../nix/narinfo.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";

export const CACHE_INFO_KEY = "nix-cache-info";

export function narInfoKey(path: StorePath | string): string {
  const hashPart = path.startsWith("/") ? parseStorePath(path).hashPart : path;
  return `${hashPart}.narinfo`;
}

export function narKey(fileHash: Sha256, compression: Compression): string {
  return `nar/${fileHash.nix32}${NAR_EXTENSION[compression]}`;
}

/**
 * Keys a substituting client may ask for: the cache info, narinfos, NARs, and the NARs of
 * delta paths (`delta/<nix32>.nar`, docs/deltas.md); not the deployer's skip notes.
 */
export function isCacheKey(key: string): boolean {
  return (
    key === CACHE_INFO_KEY ||
    /^[0-9a-z]{32}\.narinfo$/.test(key) ||
    /^nar\/[0-9a-z]{52}\.nar(\.zst|\.xz|\.bz2)?$/.test(key) ||
    /^delta\/[0-9a-z]{52}\.nar$/.test(key)
  );
}
