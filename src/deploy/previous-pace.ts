// How fast the previous deploys' hosts fetched, from the newest rollout records that say it of
// some of this deploy's hosts: the first wave of a deploy with deltas judges by it
// (delta-pace.ts). Never in a deploy's way: a store that cannot be read, or records that cannot
// be, give nothing, within a deadline.

import type { PublicKey } from "../nix/keys.js";
import type { FetchSeen, RolloutFetchPace } from "../status/rollout.js";
import { listNewestRollouts, readTrustedRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { withDeadline } from "../util/deadline.js";
import { untilAborted } from "../util/until-aborted.js";

/**
 * The newest rollout records looked at: a deploy whose hosts fetched too little to judge by (a
 * deploy back to a system they hold, one of config alone) records no pace.
 */
export const PACE_RECORDS = 5;
/** The longest the look may take. */
const PACE_READ_DEADLINE_MS = 10_000;

/**
 * The newest recorded pace in the fleet's cache store of a deploy that fetched to one of
 * `hosts` (this deploy's), or undefined: a link seen fast or slow to other hosts says nothing of
 * these (a fleet of a datacenter's hosts and of far sites, deployed apart).
 */
export async function previousFetchPace(
  cacheUrl: string | undefined,
  hosts: readonly string[],
  keys: readonly PublicKey[],
  signal?: AbortSignal,
): Promise<RolloutFetchPace | undefined> {
  if (cacheUrl === undefined) return undefined;
  let store: ObjectStore | undefined;
  const look = (async () => {
    store = await openStore(cacheUrl);
    return newestPace(store, hosts, keys);
  })();
  try {
    return await withDeadline(PACE_READ_DEADLINE_MS, signal, (bounded) =>
      untilAborted(look, bounded),
    ).catch(() => undefined);
  } finally {
    // Closed once the look ends, however it ended (a store mid-request is closed after it).
    void look.finally(() => store?.close()).catch(() => undefined);
  }
}

/**
 * The pace of the newest of the PACE_RECORDS newest records that has one for `hosts`: of each
 * kind, what was seen on one of them (a kind that names no hosts, from an older record, counts
 * for any). Only a record one of `keys` (cache.publicKeys) signed counts: a pace planted by
 * whoever can write the store would turn deltas off, or hold waves up.
 */
export async function newestPace(
  store: ObjectStore,
  hosts: readonly string[],
  keys: readonly PublicKey[],
): Promise<RolloutFetchPace | undefined> {
  const ours = new Set(hosts);
  for (const { key } of await listNewestRollouts(store, PACE_RECORDS)) {
    const record = await readTrustedRollout(store, key, keys).catch(() => undefined);
    const pace = record?.fetchPace === undefined ? undefined : paceFor(record.fetchPace, ours);
    if (pace !== undefined) return pace;
  }
  return undefined;
}

/** `pace`'s kinds seen on one of `hosts` (or naming none), or undefined when none is. */
function paceFor(pace: RolloutFetchPace, hosts: ReadonlySet<string>): RolloutFetchPace | undefined {
  const ours = (seen: FetchSeen | undefined) =>
    seen !== undefined && (seen.hosts === undefined || seen.hosts.some((h) => hosts.has(h)))
      ? seen
      : undefined;
  const whole = ours(pace.whole);
  const rebuilt = ours(pace.rebuilt);
  if (whole === undefined && rebuilt === undefined) return undefined;
  return {
    ...(whole === undefined ? {} : { whole }),
    ...(rebuilt === undefined ? {} : { rebuilt }),
  };
}
