// Rollout records in an ObjectStore (layout in rollout.ts): the deployer writes its own, and the
// dashboard finds the newest with a LIST of one key and reads it only when its etag moved.
import { InputError } from "../errors.js";
import { readAll } from "../store/helpers.js";
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { type Ask, lastAsks } from "./fleet-asks.js";
import {
  formatRolloutRecord,
  isRolloutKey,
  parseRolloutRecord,
  ROLLOUT_PREFIX,
  ROLLOUT_RECORD_LIMIT,
  type RolloutRecord,
  rolloutKey,
} from "./rollout.js";

export async function writeRollout(store: ObjectStore, record: RolloutRecord): Promise<void> {
  await store.put(rolloutKey(new Date(record.startedAt), record.id), formatRolloutRecord(record), {
    contentType: "application/json",
  });
}

/** LIST pages a search for the newest rollouts reads at most (objects that are not records). */
const MAX_ROLLOUT_PAGES = 5;

/**
 * The newest `count` rollout records' keys and etags, newest first: one LIST call, unless
 * objects that are not rollout records sort before them (then more pages, at most
 * MAX_ROLLOUT_PAGES).
 */
export async function listNewestRollouts(store: ObjectStore, count: number): Promise<ObjectInfo[]> {
  const found: ObjectInfo[] = [];
  let token: string | undefined;
  for (let page = 0; page < MAX_ROLLOUT_PAGES && found.length < count; page++) {
    const listed = await store.list(ROLLOUT_PREFIX, {
      limit: page === 0 ? count : 1000,
      ...(token === undefined ? {} : { token }),
    });
    found.push(...listed.objects.filter((o) => isRolloutKey(o.key)));
    if (listed.nextToken === undefined || listed.nextToken === token) break;
    token = listed.nextToken;
  }
  return found.slice(0, count);
}

/** A rollout record, or undefined when it is gone; a malformed one is an InputError. */
export async function readRollout(
  store: ObjectStore,
  key: string,
): Promise<RolloutRecord | undefined> {
  const bytes = await readAll(store, key, ROLLOUT_RECORD_LIMIT).catch((err: unknown) => {
    if (err instanceof InputError) {
      throw new InputError("rollout-malformed", `${store.url} ${key}: ${err.message}`);
    }
    throw err;
  });
  return bytes === undefined ? undefined : parseRolloutRecord(bytes, `${store.url} ${key}`);
}

/** Rollout records the views look back over for the fleet's last ask of each host. */
export const ASK_ROLLOUTS = 20;

/**
 * What the fleet last asked of each of `hosts` (fleet-asks.ts), from the newest ASK_ROLLOUTS
 * rollout records; one that is gone or malformed asks nothing.
 */
export async function readLastAsks(
  store: ObjectStore,
  hosts: Iterable<string>,
): Promise<Map<string, Ask>> {
  const listed = await listNewestRollouts(store, ASK_ROLLOUTS);
  const read = await mapLimit(listed, 4, async ({ key }) => {
    const record = await readRollout(store, key).catch((err: unknown) => {
      if (err instanceof InputError) return undefined;
      throw err;
    });
    return record === undefined ? [] : [{ key, record }];
  });
  return lastAsks(read.flat(), hosts);
}

/** LIST pages a search for one rollout by its id reads at most (1,000 records a page). */
const MAX_FIND_PAGES = 50;

/** The key of the rollout record whose id is `id`, or undefined when none is found. */
export async function findRolloutKey(store: ObjectStore, id: string): Promise<string | undefined> {
  return (await findRolloutAndNewer(store, id, 0))?.key;
}

/**
 * The key of the rollout record whose id is `id` (undefined when none is found), and the keys
 * of the records started after it, newest first: at most `newer`, `more` when there are others.
 */
export async function findRolloutAndNewer(
  store: ObjectStore,
  id: string,
  newer: number,
): Promise<{ key: string; newer: string[]; more: boolean } | undefined> {
  const before: string[] = [];
  let more = false;
  let token: string | undefined;
  for (let page = 0; page < MAX_FIND_PAGES; page++) {
    const listed = await store.list(ROLLOUT_PREFIX, {
      limit: 1000,
      ...(token === undefined ? {} : { token }),
    });
    for (const o of listed.objects) {
      if (!isRolloutKey(o.key)) continue;
      if (o.key.endsWith(`-${id}.json`)) {
        return { key: o.key, newer: before, more };
      }
      if (before.length < newer) before.push(o.key);
      else more = true;
    }
    if (listed.nextToken === undefined || listed.nextToken === token) return undefined;
    token = listed.nextToken;
  }
  return undefined;
}
