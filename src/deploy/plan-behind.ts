// The plan's word on hosts behind the fleet's last rollout to name them (status/behind.ts):
// read from the rollout records in the fleet's cache store, judged against what each host
// runs as the survey found it. A store that cannot be read leaves the plan without it.
import { NixshipError } from "../errors.js";
import type { DeployPlan } from "../fleet/plan.js";
import { behindOf } from "../status/behind.js";
import { readLastAsks } from "../status/rollout-store.js";
import { openStore } from "../store/url.js";

export async function withBehindRollouts(
  cacheUrl: string | undefined,
  plan: DeployPlan,
): Promise<DeployPlan> {
  if (cacheUrl === undefined) return plan;
  let asks: Awaited<ReturnType<typeof readLastAsks>>["asks"];
  try {
    const store = await openStore(cacheUrl);
    try {
      ({ asks } = await readLastAsks(
        store,
        plan.hosts.map((h) => h.host),
      ));
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
      // An unreachable host's system is not known: the plan says it is unreachable.
      if (h.action === "unreachable") return h;
      const behind = behindOf(asks.get(h.host), undefined, h.current ?? null);
      return behind === undefined
        ? h
        : { ...h, behindRollout: { rollout: behind.rollout, why: behind.why } };
    }),
  };
}
