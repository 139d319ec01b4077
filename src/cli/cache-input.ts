// What the cache commands (gc, stats, pin) share: the cache named by --cache URL, or the
// fleet's (--fleet FILE, $NIXSHIP_FLEET, or the fleet in this directory) with the fleet itself.
import { requireCacheInfo } from "../cache/cache-info.js";
import { UsageError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import type { CliIO } from "./command.js";
import { fleetHere, readFleetInput } from "./fleet-input.js";

export const CACHE_FLAGS = {
  fleet: { type: "string" },
  cache: { type: "string" },
} as const;

export const CACHE_HELP = `  --fleet FILE           the fleet whose cache it is, a file or a flake's output (.#nixship)
                         (default: $NIXSHIP_FLEET, else ./nixship.json, else the nixship
                         output of the flake in this directory)
  --cache URL            a cache named by its URL (file:///dir, s3://bucket/prefix?...)`;

export interface CacheInput {
  /** The fleet, when the cache was named by one. */
  readonly fleet: Fleet | undefined;
  readonly url: string;
}

export async function readCacheInput(
  values: { fleet?: string | undefined; cache?: string | undefined },
  io: CliIO,
  command: string,
): Promise<CacheInput> {
  if (values.fleet !== undefined && values.cache !== undefined) {
    throw new UsageError(`${command}: give --fleet or --cache, not both`);
  }
  if (values.cache !== undefined) return { fleet: undefined, url: values.cache };
  if (values.fleet === undefined && (io.env.NIXSHIP_FLEET ?? "") === "" && !fleetHere()) {
    throw new UsageError(
      `${command}: name the cache: --fleet FILE or --cache URL (no ./nixship.json, nor a flake with a nixship output, here)`,
      `see 'nixship ${command} --help'`,
    );
  }
  const { fleet, fleetFile } = await readFleetInput(values, io);
  if (fleet.cache === undefined) {
    throw new UsageError(`${command}: the fleet ${fleetFile} has no cache (cache.url)`);
  }
  return { fleet, url: fleet.cache.url };
}

/**
 * The cache at `url`, refused before anything is read or written when it holds no binary cache
 * (a typo is an error, not an empty cache that a gc report or a pin would start).
 */
export async function openCache(url: string): Promise<ObjectStore> {
  const store = await openStore(url);
  try {
    await requireCacheInfo(store);
    return store;
  } catch (err) {
    await store.close();
    throw err;
  }
}
