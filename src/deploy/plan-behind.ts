// The plan's word on the hosts it changes that are behind the fleet's last rollout to name them
// (status/behind.ts): read from the rollout records in the fleet's cache store, judged against
// what each host runs as the survey found it. A store that cannot be read leaves the plan
// without it.
import { NixshipError } from "../errors.js";
import type { DeployPlan } from "../fleet/plan.js";
import { behindOf } from "../status/behind.js";
import { readLastAsks } from "../status/rollout-store.js";
import { openStore } from "../store/url.js";

export async function withBehindRollouts(
  cacheUrl: string | undefined,
  plan: DeployPlan,
): Promise<DeployPlan> {
  const changed = plan.hosts.filter((h) => h.action === "activate").map((h) => h.host);
  if (cacheUrl === undefined || changed.length === 0) return plan;
  let asks: Awaited<ReturnType<typeof readLastAsks>>["asks"];
  try {
    const store = await openStore(cacheUrl);
    try {
      // A host the plan leaves alone runs what the fleet asks now, and one it cannot reach
      // is said unreachable: only those it changes are judged, so that a plan reads no further
      // back than they need.
      ({ asks } = await readLastAsks(store, changed));
    } finally {
      await store.close();
    }
  } catch (err) {
    if (err instanceof NixshipError) return plan;
    throw err;
  }
  if (asks.size === 0) return plan;
  return {
    ...plan,
    hosts: plan.hosts.map((h) => {
      const behind = behindOf(asks.get(h.host), undefined, h.current ?? null);
      return behind === undefined
        ? h
        : { ...h, behindRollout: { rollout: behind.rollout, why: behind.why } };
    }),
  };
}
