// A cache is a place with a `nix-cache-info` for this machine's store directory. Only an
// explicit `push` or `cache init` makes one; everything else requires it, so that a mistyped
// URL is an error, not a new empty cache.
import { InputError } from "../errors.js";
import { DEFAULT_CACHE_INFO, formatCacheInfo, parseCacheInfo } from "../nix/cache-info.js";
import type { ObjectStore } from "../store/object-store.js";
import { CACHE_INFO_KEY } from "./layout.js";
import { readText } from "./read.js";

/** nix-cache-info is three short lines; a larger object is not one. */
const CACHE_INFO_LIMIT = 64 * 1024;

/** Makes `store` a cache if it is not one yet; true when it made it. */
export async function ensureCacheInfo(store: ObjectStore): Promise<boolean> {
  const existing = await readText(store, CACHE_INFO_KEY, CACHE_INFO_LIMIT);
  if (existing === undefined) {
    const put = await store.put(CACHE_INFO_KEY, Buffer.from(formatCacheInfo()), {
      contentType: "text/x-nix-cache-info",
      condition: { ifAbsent: true },
    });
    if (put.status === "written") return true;
    // Something is there already: another writer's nix-cache-info (checked as any), or what a
    // read does not take for one (a directory of that name), which no reader ever would.
    const there = await readText(store, CACHE_INFO_KEY, CACHE_INFO_LIMIT);
    if (there === undefined) {
      throw new InputError(
        "bad-cache-info",
        `${store.url}: ${CACHE_INFO_KEY} is there, but is not a file a reader takes (a directory?)`,
        { hint: `remove it, then run 'nixship cache init ${store.url}' again` },
      );
    }
    checkStoreDir(store, there);
    return false;
  }
  checkStoreDir(store, existing);
  return false;
}

/** Fails, saying how to make one, unless `store` is a cache for this store directory. */
export async function requireCacheInfo(store: ObjectStore): Promise<void> {
  const existing = await readText(store, CACHE_INFO_KEY, CACHE_INFO_LIMIT);
  if (existing === undefined) {
    throw new InputError(
      "no-binary-cache",
      `${store.url} holds no binary cache (it has no ${CACHE_INFO_KEY})`,
      {
        hint: `check the URL for a typo; to start a new cache there, run 'nixship cache init ${store.url}' (or push to it)`,
      },
    );
  }
  checkStoreDir(store, existing);
}

function checkStoreDir(store: ObjectStore, existing: string): void {
  const info = parseCacheInfo(existing, `${store.url}/${CACHE_INFO_KEY}`);
  if (info.storeDir !== DEFAULT_CACHE_INFO.storeDir) {
    throw new InputError(
      "store-dir-mismatch",
      `cache ${store.url} is for store directory ${info.storeDir}, not ${DEFAULT_CACHE_INFO.storeDir}`,
    );
  }
}
