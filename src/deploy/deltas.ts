// Before a rollout: the deltas its hosts can use, computed and published in the fleet's cache
// (docs/deltas.md), each (target, base) pair once whatever the number of hosts and modes that
// share it. One step for every mode: ssh, ssm and agent hosts all fetch them from the cache.
import type { DeltaTally } from "../cache/delta-compute.js";
import { lookupDeltas } from "../cache/delta-lookup.js";
import { NixshipError } from "../errors.js";
import type { CacheSettings } from "../fleet/fleet.js";
import type { PlanDeltas } from "../fleet/plan.js";
import { deltaFetches, type PlanDeltaPairs, type StoreNar } from "../fleet/plan-deltas.js";
import { type PublicKey, parsePublicKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import { type DeltaWorkerInput, startDeltaWorker } from "./delta-worker.js";

/** An error as one line: its message, and its hint when it has one. */
function errorLine(err: NixshipError): string {
  return err.hint === undefined ? err.message : `${err.message} (${err.hint})`;
}

/**
 * The plan's pairs with their paths the deployer's store holds, as it recorded them (`recorded`:
 * the survey's closures of the systems the hosts run, and the push's of those they go to): a
 * base the cache lacks is read from there, and so is any path the store holds as the cache's
 * narinfo says, on worker threads.
 */
export function withStoreNars(
  planned: PlanDeltaPairs,
  ...recorded: readonly ReadonlyMap<StorePath, StoreNar>[]
): PlanDeltaPairs {
  const storeNars = new Map<StorePath, StoreNar>();
  for (const { base, target } of planned.pairs) {
    for (const path of [base, target]) {
      const info = recorded.map((r) => r.get(path)).find((i) => i !== undefined);
      if (info !== undefined) storeNars.set(path, { narHash: info.narHash, narSize: info.narSize });
    }
  }
  return { ...planned, storeNars };
}

/** The keys the delta step believes the cache's narinfos and skip notes by: the hosts' own. */
export function cacheKeys(cache: Pick<CacheSettings, "publicKeys">): PublicKey[] {
  return cache.publicKeys.map((k) => parsePublicKey(k));
}

/**
 * What the plan's hosts that use deltas would fetch, from what the cache holds of their pairs
 * now (read only: `publishPlanDeltas` computes the rest after the plan); undefined when none
 * of its hosts changes with deltas on. A cache that cannot be read never fails the plan (as for
 * its diffs): `error` says why, and the plan has no figures.
 */
export async function planDeltas(
  cache: { readonly url: string; readonly trusted: readonly PublicKey[] },
  planned: PlanDeltaPairs,
  signal?: AbortSignal,
  /** The paths each host's store said it lacks, where it said (the survey's answer). */
  storeLacks?: ReadonlyMap<string, ReadonlySet<StorePath>>,
): Promise<PlanDeltas | undefined> {
  const { unread, noDelta } = planned;
  if (planned.hosts.length === 0 && unread.length === 0 && noDelta.length === 0) return undefined;
  if (planned.hosts.length === 0) return { hosts: [], pending: 0, unread, noDelta };
  const store = await openStore(cache.url);
  try {
    signal?.throwIfAborted();
    // Hosts that make the same move share one list of the paths they lack.
    const paths = new Set<StorePath>();
    for (const lacking of new Set(planned.hosts.map((h) => h.lacking))) {
      for (const p of lacking) paths.add(p.path);
    }
    const lookup = await lookupDeltas(store, cache.trusted, planned.pairs, [...paths], signal);
    const pending = [...lookup.pairs.values()].filter((s) => s.kind === "pending").length;
    return { hosts: deltaFetches(planned, lookup, storeLacks), pending, unread, noDelta };
  } catch (err) {
    if (signal?.aborted || !(err instanceof NixshipError)) throw err;
    return { hosts: [], pending: 0, unread, noDelta, error: errorLine(err) };
  } finally {
    await store.close();
  }
}

/**
 * Computes and publishes the plan's pairs (`planDeltaPairs`) in the cache at `cacheUrl` at the
 * fast level and waits for them, told as `deltas-start`, `delta-progress` (at most once a
 * second) and `deltas-done`: what a deploy that returns before its hosts fetch (`--async`)
 * does. A pair that fails is counted and its path comes whole; a deployer that cannot compute
 * deltas at all (no zstd with --patch-from) publishes none and says why (`deltas-done`'s
 * `error`): its hosts fetch every path whole and the deploy goes on. A rollout computes them
 * in the background instead (delta-worker.ts).
 */
export async function publishPlanDeltas(
  input: Omit<DeltaWorkerInput, "improve">,
): Promise<DeltaTally | undefined> {
  const worker = startDeltaWorker({ ...input, improve: false });
  try {
    await worker.firstPass;
  } finally {
    await worker.stop();
  }
  input.signal?.throwIfAborted();
  return worker.tally();
}
