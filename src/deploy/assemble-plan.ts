// The plan from what was built and what the survey found. Pure.
import type { Action } from "../fleet/action.js";
import { hostBake } from "../fleet/bake.js";
import type { FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import { type PausePolicy, plannedPauses } from "../fleet/pause-policy.js";
import { type DeployPlan, planDeploy } from "../fleet/plan.js";
import type { HostSecrets } from "../host/activation-session.js";
import type { StorePath } from "../nix/store-path.js";
import type { BuildResult } from "./build.js";
import type { Survey } from "./survey.js";

// --- plan -----------------------------------------------------------------------------------

/** The plan from what was built and what the survey found. Pure. */
export function planFromSurvey(
  action: Action,
  hosts: readonly FleetHost[],
  prepared: {
    readonly built: Pick<BuildResult, "byHost">;
    readonly secrets: ReadonlyMap<string, HostSecrets>;
  },
  found: Survey,
  policyFor?: (host: FleetHost, desired: StorePath) => RolledOutAs,
  rollout?: Pick<RolloutPolicy, "canary" | "parallel">,
): DeployPlan {
  return planDeploy({
    action,
    targets: hosts.map((h, i) => {
      const desired = desiredSystem(prepared.built, h.name);
      const policy = policyFor?.(h, desired);
      const bake = policy === undefined ? undefined : hostBake(action, policy);
      return {
        host: h.name,
        desired,
        secrets: prepared.secrets.get(h.name)?.digest,
        state: found.states[i],
        ...(policy === undefined
          ? {}
          : {
              reboot: policy.reboot,
              checks: policy.health,
              shape: { canary: policy.canary, parallel: policy.parallel, role: policy.role },
              ...(bake === undefined ? {} : { bake }),
            }),
      };
    }),
    pathInfos: found.pathInfos,
    ...(rollout === undefined ? {} : { rollout }),
  });
}

/** What the plan needs of a host's policy: its checks, reboots and place in the waves. */
export type RolledOutAs = Pick<
  RolloutPolicy,
  "health" | "reboot" | "canary" | "parallel" | "bake" | "analysis"
> & {
  readonly role: string;
};

function desiredSystem(built: Pick<BuildResult, "byHost">, host: string): StorePath {
  const path = built.byHost.get(host);
  if (path === undefined) throw new Error(`the build has no system for ${host}`);
  return path;
}

/**
 * `plan` as the deploy runs it: with where its rollout pauses (pause-policy.ts), none for a
 * rollback (it puts back what ran before, at once); a release published without watching
 * (`--async`) names every host at once (`publishedAtOnce`).
 */
export function planAsRun(
  plan: DeployPlan,
  policy: { readonly pause?: PausePolicy | undefined; readonly maxFailures: number },
  options: { readonly rollback?: unknown; readonly async?: boolean },
): DeployPlan {
  if (options.async === true) return publishedAtOnce(plan);
  const { pause, maxFailures } = policy;
  const watched = plan.waves.length === 0 ? plan : { ...plan, maxFailures };
  if (pause === undefined || options.rollback !== undefined) return watched;
  const { pauses, unused } = plannedPauses(plan.waves, pause);
  return {
    ...watched,
    ...(pauses.length === 0 ? {} : { pauses }),
    ...(unused.length === 0 ? {} : { unusedPauses: unused }),
  };
}

/**
 * The plan of a release published without watching: one wave of every host that changes, and
 * nothing the deployer would watch (no pause, no bake).
 */
export function publishedAtOnce(plan: DeployPlan): DeployPlan {
  const { bakeNotes: _notes, pauses: _pauses, unusedPauses: _unused, ...rest } = plan;
  const changing = plan.hosts.filter((h) => h.action === "activate").map((h) => h.host);
  return {
    ...rest,
    hosts: plan.hosts.map(({ bake: _bake, ...host }) => host),
    waves: changing.length === 0 ? [] : [{ wave: 1, kind: "main", hosts: changing }],
    atOnce: true,
  };
}
