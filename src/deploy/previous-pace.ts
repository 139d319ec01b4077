// How fast the previous deploys' hosts fetched, from the newest rollout records that say it: the
// first wave of a deploy with deltas judges by it (delta-pace.ts). Never in a deploy's way: a
// store that cannot be read, or records that cannot be, give nothing, within a deadline.

import type { RolloutFetchPace } from "../status/rollout.js";
import { listNewestRollouts, readRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";

/**
 * The newest rollout records looked at: a deploy whose hosts fetched too little to judge by (a
 * deploy back to a system they hold, one of config alone) records no pace.
 */
export const PACE_RECORDS = 5;
/** The longest the look may take. */
const PACE_READ_DEADLINE_MS = 10_000;

/** The newest recorded pace in the fleet's cache store, or undefined. */
export async function previousFetchPace(
  cacheUrl: string | undefined,
  signal?: AbortSignal,
): Promise<RolloutFetchPace | undefined> {
  if (cacheUrl === undefined) return undefined;
  const deadline = AbortSignal.timeout(PACE_READ_DEADLINE_MS);
  const bounded = signal === undefined ? deadline : AbortSignal.any([deadline, signal]);
  let store: ObjectStore | undefined;
  const look = (async () => {
    store = await openStore(cacheUrl);
    return newestPace(store);
  })();
  const gaveUp = new Promise<undefined>((resolve) => {
    if (bounded.aborted) resolve(undefined);
    bounded.addEventListener("abort", () => resolve(undefined), { once: true });
  });
  try {
    return await Promise.race([look.catch(() => undefined), gaveUp]);
  } finally {
    // Closed once the look ends, however it ended (a store mid-request is closed after it).
    void look.finally(() => store?.close()).catch(() => undefined);
  }
}

/** The pace of the newest of the PACE_RECORDS newest records that has one. */
export async function newestPace(store: ObjectStore): Promise<RolloutFetchPace | undefined> {
  for (const { key } of await listNewestRollouts(store, PACE_RECORDS)) {
    const record = await readRollout(store, key).catch(() => undefined);
    if (record?.fetchPace !== undefined) return record.fetchPace;
  }
  return undefined;
}
