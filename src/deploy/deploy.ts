// `nixship plan` and `nixship deploy`, read → plan → execute: plan-deployment.ts reads the
// world (prepare.ts builds and pushes, survey.ts asks the hosts) and assembles the plan with each
// host's request (assemble-plan.ts, host-requests.ts, both pure); execute-plan.ts rolls it out
// and records it. `release publish` and `rollback` go through `deploy` too.
import type { DeployOptions, DeployReport } from "./deploy-options.js";
import { executePlan } from "./execute-plan.js";
import { planDeployment } from "./plan-deployment.js";

/** Builds and plans, pushing nothing and changing no host: what `nixship plan` shows. */
export async function planOnly(options: DeployOptions): Promise<DeployReport> {
  const planned = await planDeployment(options, "plan");
  await planned.close();
  return { plan: planned.plan, results: [], ok: true, releases: [], channelNotes: [] };
}

/** Builds, pushes, plans and rolls out (or, with `async`, publishes one release). */
export async function deploy(options: DeployOptions): Promise<DeployReport> {
  const planned = await planDeployment(options, "deploy");
  try {
    return await executePlan({ ...planned, options });
  } finally {
    await planned.close();
  }
}
