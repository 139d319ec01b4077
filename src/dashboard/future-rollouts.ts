// Rollout records dated ahead of the dashboard's clock. A record's key sorts by its start time,
// newest first, so one dated in the future (a deployer's clock far ahead, or a planted record)
// would sort first, and stay "the newest rollout", for good. The dashboard reads rollouts
// through a store on which such records are not listed: a record that started more than
// FUTURE_SKEW after now is passed over, and the page says that one was.
import { isRolloutKey, ROLLOUT_PREFIX, rolloutKey } from "../status/rollout.js";
import type { ObjectStore } from "../store/object-store.js";
import { wrapStore } from "../store/wrap-store.js";

/**
 * How far ahead of the dashboard's clock a time it reads may be (clocks differ a little). A time
 * further ahead (a clock far off, or a record written by hand) is never taken for the newest:
 * it would stay the newest for good.
 */
export const FUTURE_SKEW = 5 * 60 * 1000;

/** A rollout record passed over: its key and when it says it started. */
export interface FutureRollout {
  readonly key: string;
  readonly startedAt: string;
}

/** The key's digits for time 0: a key's digits are this minus its start time in ms. */
const BASE = Number(digitsOf(rolloutKey(new Date(0), "00000000")));

function digitsOf(key: string): string {
  return key.slice(ROLLOUT_PREFIX.length, ROLLOUT_PREFIX.length + 13);
}

/** Where the records dated no later than `latest` begin (what S3's StartAfter takes). */
function boundary(latest: number): string {
  return `${ROLLOUT_PREFIX}${String(BASE - latest).padStart(13, "0")}`;
}

/**
 * `store`, on which a listing of the rollout records starts after the ones dated more than
 * FUTURE_SKEW after `now()`: RolloutWatch, reading through it, finds the newest record that is
 * not in the future, with the same one LIST.
 */
export function withoutFutureRollouts(
  store: ObjectStore,
  now: () => number = Date.now,
): ObjectStore {
  return wrapStore(store, {
    list: (prefix, options = {}) =>
      prefix === ROLLOUT_PREFIX && options.token === undefined && options.startAfter === undefined
        ? store.list(prefix, { ...options, startAfter: boundary(now() + FUTURE_SKEW) })
        : store.list(prefix, options),
  });
}

/** The first record dated more than FUTURE_SKEW ahead of `now`, if any: one LIST of one key. */
export async function firstFutureRollout(
  store: ObjectStore,
  now: number,
): Promise<FutureRollout | undefined> {
  // Every record's key starts with a digit, and "/" sorts just before "0": a key that sorts
  // before every record's (a bucket writer's "!junk") is not listed; one that is no record's is
  // not named as one.
  const { objects } = await store.list(ROLLOUT_PREFIX, {
    limit: 1,
    startAfter: `${ROLLOUT_PREFIX}/`,
  });
  const key = objects[0]?.key;
  if (key === undefined || !isRolloutKey(key) || key >= boundary(now + FUTURE_SKEW)) {
    return undefined;
  }
  const started = BASE - Number(digitsOf(key));
  return {
    key,
    startedAt: Number.isSafeInteger(started) ? new Date(started).toISOString() : "unknown",
  };
}
