// Rollout records dated ahead of the reader's clock. A record's key sorts by its start time,
// newest first, so one dated in the future (a deployer's clock far ahead, or a planted record)
// would sort first, and stay "the newest rollout", for good. Every listing of the newest
// rollouts (rollout-store.ts's listNewestRollouts: the asks of status, the dashboard and plan,
// a rollback's default, cache gc) starts after them: a record that started more than
// FUTURE_SKEW after now is passed over, and status, rollback and the dashboard name it.
import type { ObjectStore } from "../store/object-store.js";
import { isRolloutKey, ROLLOUT_PREFIX, rolloutKey, rolloutKeyStart } from "./rollout.js";

/**
 * How far ahead of the reader's clock a time it reads may be (clocks differ a little). A time
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
const BASE = Number(
  rolloutKey(new Date(0), "00000000").slice(ROLLOUT_PREFIX.length, ROLLOUT_PREFIX.length + 13),
);

/**
 * Where a listing of the rollout records not dated more than FUTURE_SKEW after `now` starts
 * (its startAfter, which S3 takes): those dated further ahead sort before it.
 */
export function timelyRolloutsStart(now: number): string {
  return `${ROLLOUT_PREFIX}${String(BASE - (now + FUTURE_SKEW)).padStart(13, "0")}`;
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
  if (key === undefined || !isRolloutKey(key) || key >= timelyRolloutsStart(now)) {
    return undefined;
  }
  const started = rolloutKeyStart(key) ?? Number.NaN;
  return {
    key,
    startedAt: Number.isSafeInteger(started) ? new Date(started).toISOString() : "unknown",
  };
}

/** What status and rollback say of a record they passed over. */
export function futureRolloutText(future: FutureRollout): string {
  return `the rollout record ${future.key}, started ${future.startedAt}, was passed over: a record dated more than ${FUTURE_SKEW / 60_000} minutes ahead of this machine's clock is not taken for the newest (a deployer's clock is wrong, or someone wrote it by hand); once its time comes, it counts`;
}
