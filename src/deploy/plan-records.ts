// The fleet's records a plan completes the survey with, read from one open store: what the
// fleet last asked of the hosts it may change (one read of the rollout records, believing those
// a key of cache.publicKeys signed: status/rollout-store.ts), and their own status records on
// demand. plan-recorded-outcomes.ts and plan-behind.ts both judge from it. A store that cannot
// be read gives none: the plan is then made from what the hosts said.
import { NixshipError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import type { Ask } from "../status/fleet-asks.js";
import { readLastAsks } from "../status/rollout-store.js";
import type { StatusRecord } from "../status/status.js";
import { readStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { cacheKeys } from "./deltas.js";

export interface PlanRecords {
  /** What the fleet last asked of each host it was read for. */
  readonly asks: ReadonlyMap<string, Ask>;
  /** A host's status record (undefined: it has none); a store error is the caller's to weigh. */
  status(host: string): Promise<StatusRecord | undefined>;
  close(): Promise<void>;
}

/** Opens the fleet's cache store and reads what it last asked of `hosts` (undefined: no store). */
export async function readPlanRecords(
  cache: Fleet["cache"],
  hosts: readonly string[],
): Promise<PlanRecords | undefined> {
  if (cache === undefined || hosts.length === 0) return undefined;
  let store: ObjectStore | undefined;
  try {
    store = await openStore(cache.url);
    const { asks } = await readLastAsks(store, hosts, cacheKeys(cache));
    const open = store;
    return { asks, status: (host) => readStatus(open, host), close: () => open.close() };
  } catch (err) {
    await store?.close();
    if (err instanceof NixshipError) return undefined;
    throw err;
  }
}
