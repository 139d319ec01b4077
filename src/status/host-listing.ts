// Listings of per-host prefixes (`<prefix><host>/…`: heartbeats, one release's markers), with a
// bound per host: every reader takes the first HOST_KEYS_READ keys of a host in byte order and
// skips the rest of that host's prefix with a LIST that starts after it, so a host that writes
// junk under its own prefix costs each reader a page or two, however much it writes.
import { NAME_PATTERN } from "../fleet/fleet.js";
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";

/**
 * The most keys of one host's prefix a reader takes. An agent writes at most 4 markers per
 * release (one per state) and one heartbeat key per state and interval (2, more only after its
 * interval changed): what lies past these is not an agent's and is skipped unread.
 */
export const HOST_KEYS_READ = 16;

/** Skipped host segments a listing names at most (what it says stays small too). */
const SKIPPED_NAMED = 100;

export interface HostListing {
  /** The keys taken, in byte order: at most `perHost` under each host's prefix. */
  readonly objects: ObjectInfo[];
  /** LIST calls this listing took. */
  readonly listCalls: number;
  /**
   * Host segments passed over: those that name no host, and hosts seen to hold more than a
   * reader takes (a host whose bound ends a page is skipped past without being named).
   */
  readonly skipped: readonly string[];
}

export interface HostListingOptions {
  /** Keys taken under one host's prefix (default HOST_KEYS_READ). */
  readonly perHost?: number;
}

/**
 * The keys under `prefix` laid out as `<prefix><host>/<rest>`, at most `perHost` of each host
 * (counting every key under its prefix, whether it parses or not). A key right under `prefix`
 * (no host segment; no agent may write one) is passed over. LIST calls: a page per 1,000 keys
 * taken, and at most one more for each host segment that holds more than `perHost` keys or
 * names no host.
 */
export async function listHostPrefixes(
  store: ObjectStore,
  prefix: string,
  options: HostListingOptions = {},
): Promise<HostListing> {
  const perHost = options.perHost ?? HOST_KEYS_READ;
  const objects: ObjectInfo[] = [];
  const skipped: string[] = [];
  const name = (segment: string) => {
    if (skipped.length < SKIPPED_NAMED) skipped.push(segment.slice(0, 100));
  };
  let listCalls = 0;
  let next: { token: string } | { startAfter: string } | undefined;
  // The host segment the listing is in, whether it names a host, and its keys seen so far.
  let host: string | undefined;
  let valid = false;
  let seen = 0;
  for (;;) {
    const page = await store.list(prefix, next ?? {});
    listCalls++;
    for (const o of page.objects) {
      const segment = hostSegment(prefix, o.key);
      if (segment === undefined) continue;
      if (segment !== host) {
        host = segment;
        seen = 0;
        valid = NAME_PATTERN.test(segment);
        if (!valid) name(segment);
      }
      if (!valid) continue;
      if (seen++ < perHost) objects.push(o);
      else if (seen === perHost + 1) name(segment);
    }
    if (page.nextToken === undefined) break;
    const last = page.objects.at(-1);
    // The page ends in a host the reader takes nothing more of: the next page starts after
    // its prefix ("<host>0" follows every "<host>/…" key: no character lies between / and 0).
    const lastHost = last === undefined ? undefined : hostSegment(prefix, last.key);
    if (lastHost !== undefined && lastHost === host && (!valid || seen >= perHost)) {
      next = { startAfter: `${prefix}${lastHost}0` };
    } else {
      next = { token: page.nextToken };
    }
  }
  return { objects, listCalls, skipped };
}

/** The host segment of a key under `prefix` (the text before its next "/"), if it has one. */
function hostSegment(prefix: string, key: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const slash = key.indexOf("/", prefix.length);
  return slash <= prefix.length ? undefined : key.slice(prefix.length, slash);
}
