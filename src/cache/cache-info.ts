// Makes sure a cache has a `nix-cache-info` that matches this machine's store directory.
import { InputError } from "../errors.js";
import { DEFAULT_CACHE_INFO, formatCacheInfo, parseCacheInfo } from "../nix/cache-info.js";
import type { ObjectStore } from "../store/object-store.js";
import { CACHE_INFO_KEY } from "./layout.js";
import { readText } from "./read.js";

export async function ensureCacheInfo(store: ObjectStore): Promise<void> {
  const existing = await readText(store, CACHE_INFO_KEY);
  if (existing === undefined) {
    await store.put(CACHE_INFO_KEY, Buffer.from(formatCacheInfo()), {
      contentType: "text/x-nix-cache-info",
      condition: { ifAbsent: true },
    });
    return;
  }
  const info = parseCacheInfo(existing, `${store.url}/${CACHE_INFO_KEY}`);
  if (info.storeDir !== DEFAULT_CACHE_INFO.storeDir) {
    throw new InputError(
      "store-dir-mismatch",
      `cache ${store.url} is for store directory ${info.storeDir}, not ${DEFAULT_CACHE_INFO.storeDir}`,
    );
  }
}
