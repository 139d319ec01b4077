// The plan's word on agent hosts whose desired system failed on them: the channel never names
// such a system again unless the operator allows it (--allow-failed), so the deploy would
// refuse them; the plan says so first (channel/failed-systems.ts has the rule).
import type { ChannelCapability } from "../delivery/delivery.js";
import type { DeployPlan } from "../fleet/plan.js";

export async function withRefusedFailed(
  channel: ChannelCapability | undefined,
  plan: DeployPlan,
): Promise<DeployPlan> {
  const changing = plan.hosts.filter((h) => h.action === "activate");
  if (channel === undefined || changing.length === 0) return plan;
  const failed = await channel.failedOn(changing.map((h) => ({ host: h.host, path: h.desired })));
  if (failed.size === 0) return plan;
  return {
    ...plan,
    hosts: plan.hosts.map((h) => {
      const why = h.action === "activate" ? failed.get(h.host) : undefined;
      return why === undefined ? h : { ...h, refusedFailed: why };
    }),
  };
}
