// Before a rollout: the deltas its hosts can use, computed and published in the fleet's cache
// (docs/deltas.md), each (target, base) pair once whatever the number of hosts and modes that
// share it. One step for every mode: ssh, ssm and agent hosts all fetch them from the cache.
import { computeDeltas, type DeltaTally } from "../cache/delta-compute.js";
import type { Fleet, RolloutPolicy } from "../fleet/fleet.js";
import type { PlanDeltaPairs } from "../fleet/plan-deltas.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import type { DeployEvent } from "./events.js";

/** Seconds between two `delta-progress` events while pairs are computed. */
const PROGRESS_EVERY = 1;

/**
 * The delta tool `host` is given: the fleet's, when the fleet has a cache to publish deltas in
 * and the host's policy lets it use them; undefined: the host fetches every path whole.
 */
export function deltaToolFor(
  fleet: Pick<Fleet, "deltas" | "cache">,
  policy: Pick<RolloutPolicy, "deltas">,
): StorePath | undefined {
  if (fleet.deltas === undefined || fleet.cache === undefined || !policy.deltas) return undefined;
  return fleet.deltas.tool;
}

/**
 * Computes and publishes the plan's pairs (`planDeltaPairs`) in the cache at `cacheUrl`, told
 * as `deltas-start`, `delta-progress` (at most once a second) and `deltas-done`. A pair that
 * fails is counted and its path comes whole; only an interrupt, or a zstd that cannot compute
 * deltas at all, ends the deploy.
 */
export async function publishPlanDeltas(input: {
  readonly cacheUrl: string;
  readonly key: SecretKey;
  readonly planned: PlanDeltaPairs;
  readonly emit: (event: DeployEvent) => void;
  readonly signal?: AbortSignal | undefined;
}): Promise<DeltaTally> {
  const { planned, emit } = input;
  const started = performance.now();
  emit({
    type: "deltas-start",
    pairs: planned.pairs.length,
    hosts: planned.hosts.length,
    unread: planned.unread,
  });
  const store = await openStore(input.cacheUrl);
  try {
    let done = 0;
    let told = started;
    const tally = await computeDeltas(store, input.key, planned.pairs, {
      ...(input.signal ? { signal: input.signal } : {}),
      emit: (e) => {
        if (e.type !== "delta-done" && e.type !== "delta-failed") return;
        done++;
        const now = performance.now();
        const quiet = e.type === "delta-done" && done < planned.pairs.length;
        if (quiet && now - told < PROGRESS_EVERY * 1000) return;
        told = now;
        emit({
          type: "delta-progress",
          done,
          total: planned.pairs.length,
          ...(e.type === "delta-failed"
            ? { failed: { target: e.pair.target, base: e.pair.base, message: e.message } }
            : {}),
        });
      },
    });
    emit({
      type: "deltas-done",
      ...tally,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    });
    return tally;
  } finally {
    await store.close();
  }
}
