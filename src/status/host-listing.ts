// Listings of per-host prefixes (`<prefix><host>/…`: heartbeats, one release's markers), with a
// bound per host: every reader takes the first HOST_KEYS_READ keys of a host in byte order and
// skips the rest of that host's prefix with a LIST that starts after it, so a host that writes
// junk under its own prefix costs each reader a page or two, however much it writes. A reader
// that lists the same prefix again and again keeps what the last listing found crowded
// (crowded-segments.ts): its next listing cuts each page at a crowded host, reading a few keys
// of it, not a page of its junk.
import { NAME_PATTERN } from "../fleet/fleet.js";
import { compareKeys, MAX_PAGE } from "../store/keys.js";
import type { ListOptions, ObjectInfo, ObjectStore } from "../store/object-store.js";
import {
  type CrowdedSegment,
  type CrowdedSegments,
  REMEMBERED_SEGMENTS,
} from "./crowded-segments.js";

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
  /**
   * What the last listing of this prefix found crowded, kept by a reader that lists it again
   * (a poll): read to cut this listing's pages, then replaced by what this one finds. The keys
   * taken are the same with it or without it; only the pages differ.
   */
  readonly crowded?: CrowdedSegments;
}

/**
 * The keys under `prefix` laid out as `<prefix><host>/<rest>`, at most `perHost` of each host
 * (counting every key under its prefix, whether it parses or not). A key right under `prefix`
 * (no host segment; no agent may write one) is passed over. LIST calls: a page per 1,000 keys
 * taken, and at most one more for each host segment that holds more than `perHost` keys or
 * names no host (two for a crowded one remembered from the last listing whose keys before it
 * changed since).
 */
export async function listHostPrefixes(
  store: ObjectStore,
  prefix: string,
  options: HostListingOptions = {},
): Promise<HostListing> {
  const perHost = options.perHost ?? HOST_KEYS_READ;
  /** The keys of a segment a page must hold to show that it still holds more than is taken. */
  const probe = (segment: string) => (NAME_PATTERN.test(segment) ? perHost + 1 : 1);
  const remembered = options.crowded?.recall(prefix) ?? [];
  const learnt: CrowdedSegment[] = [];
  const objects: ObjectInfo[] = [];
  const skipped: string[] = [];
  const name = (segment: string) => {
    if (skipped.length < SKIPPED_NAMED) skipped.push(segment.slice(0, 100));
  };
  let listCalls = 0;
  let next: ListOptions = {};
  // The host segment the listing is in, whether it names a host, its keys seen so far, and
  // whether the listing started after it.
  let host: string | undefined;
  let valid = false;
  let seen = 0;
  let jumped = false;
  // Keys listed since the last segment learnt crowded, and that count when `host` began.
  let gap = 0;
  let gapAtHost = 0;
  // The remembered segment the listing has not passed yet, and the keys listed since it passed
  // the one before (none of this segment's own).
  let ahead = 0;
  let sinceRemembered = 0;
  /** Leaving `host`: it is remembered when the listing passed over many of its keys. */
  const leave = () => {
    if (host === undefined) return;
    const passedOver = valid ? seen - perHost : seen;
    if (passedOver > 0 && (jumped || passedOver >= perHost)) {
      if (learnt.length < REMEMBERED_SEGMENTS) learnt.push({ segment: host, before: gapAtHost });
      gap = 0;
    }
  };
  /**
   * The next page's size: a page that would run into a remembered segment ends a few keys
   * into it (as many keys before it as the last listing saw, and enough of its own to show
   * it is still crowded); a page inside one takes just what that still needs. Otherwise (no
   * segment ahead, or more keys before it than last time) a full page.
   */
  const limitAhead = (): number | undefined => {
    const segment = remembered[ahead];
    if (segment === undefined) return undefined;
    const wanted = probe(segment.segment);
    if (segment.segment === host) return Math.max(1, wanted - seen);
    const remaining = segment.before - sinceRemembered;
    return remaining < 0 ? undefined : Math.min(MAX_PAGE, remaining + wanted);
  };
  for (;;) {
    const limit = limitAhead();
    const page = await store.list(prefix, limit === undefined ? next : { ...next, limit });
    listCalls++;
    for (const o of page.objects) {
      for (let r = remembered[ahead]; r !== undefined; r = remembered[ahead]) {
        if (compareKeys(o.key, `${prefix}${r.segment}0`) < 0) break;
        ahead++;
        sinceRemembered = 0;
      }
      const segment = hostSegment(prefix, o.key);
      if (segment === undefined || segment !== remembered[ahead]?.segment) sinceRemembered++;
      if (segment !== host) {
        leave();
        host = segment;
        seen = 0;
        jumped = false;
        gapAtHost = gap;
        valid = segment !== undefined && NAME_PATTERN.test(segment);
        if (segment !== undefined && !valid) name(segment);
      }
      gap++;
      if (segment === undefined) continue;
      seen++;
      if (!valid) continue;
      if (seen <= perHost) objects.push(o);
      else if (seen === perHost + 1) name(segment);
    }
    if (page.nextToken === undefined) break;
    // The page ends in a host the reader takes nothing more of: the next page starts after
    // its prefix ("<host>0" follows every "<host>/…" key: no character lies between / and 0).
    // A remembered host whose bound ends the page is first looked into for one key more, so
    // that it is named as crowded as long as it is.
    const inRemembered = host !== undefined && remembered[ahead]?.segment === host;
    const last = page.objects.at(-1);
    const endsInHost =
      last !== undefined && host !== undefined && hostSegment(prefix, last.key) === host;
    if (endsInHost && (!valid || seen > perHost || (seen === perHost && !inRemembered))) {
      next = { startAfter: `${prefix}${host}0` };
      jumped = true;
      if (inRemembered) {
        ahead++;
        sinceRemembered = 0;
      }
    } else {
      next = { token: page.nextToken };
    }
  }
  leave();
  options.crowded?.remember(prefix, learnt);
  return { objects, listCalls, skipped };
}

/** The host segment of a key under `prefix` (the text before its next "/"), if it has one. */
function hostSegment(prefix: string, key: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const slash = key.indexOf("/", prefix.length);
  return slash <= prefix.length ? undefined : key.slice(prefix.length, slash);
}
