// What each host is asked to do, from the plan and what was prepared: its system, where it
// fetches it, and its resolved policy's checks and limits. Pure.
import type { DeployRequest } from "../delivery/delivery.js";
import type {
  CacheSettings,
  DeliveryMode,
  FleetHost,
  HealthChecks,
  RolloutPolicy,
} from "../fleet/fleet.js";
import { hostPolicy } from "../fleet/host-policy.js";
import type { DeployPlan, PlannedHost } from "../fleet/plan.js";
import { buildDeployRequest } from "../host/activation-session.js";
import type { StorePath } from "../nix/store-path.js";
import type { DeployOptions } from "./deploy-options.js";
import { judgeBootRequest } from "./pending-boot.js";
import type { Prepared } from "./prepare.js";
import { withSystemHealth } from "./system-health.js";

/** The policy `host` is deployed with: the fleet's, its role's (`policies`), then the flags. */
export function policyOf(
  options: Pick<DeployOptions, "fleet" | "policy" | "policyFlags">,
  host: FleetHost,
  systemHealth?: HealthChecks,
): RolloutPolicy {
  const policy = hostPolicy(options.policy, options.fleet.policies, host, options.policyFlags);
  return { ...policy, health: withSystemHealth(policy.health, systemHealth) };
}

/**
 * Whether the deploy's hosts substitute from the fleet's cache: agent hosts always (through
 * their agent's proxy), the others when the deploy gives them a substituter (else the closure
 * is copied to them whole).
 */
export function substitutesFromCache(mode: DeliveryMode, givesSubstituter: boolean): boolean {
  return mode === "agent" || givesSubstituter;
}

/**
 * Whether a deploy gives its hosts a substituter, as a plan (which pushes nothing) foresees
 * it: the cache it serves with --serve-cache, or the cache's own `substituter` (prepare.ts).
 */
export function deployGivesSubstituter(
  cache: Pick<CacheSettings, "substituter"> | undefined,
  serveCache: DeployOptions["serveCache"],
): boolean {
  return cache !== undefined && (serveCache !== undefined || cache.substituter !== undefined);
}

/**
 * What a host is asked to do: its system, from where, and its policy's checks and limits;
 * `deltaTool`: the zstd the plan gives it to apply deltas with (plan-deltas.ts), if any.
 */
export function deployRequest(
  options: Pick<DeployOptions, "action" | "fleet" | "policy" | "policyFlags" | "rollback">,
  prepared: Pick<Prepared, "substituters" | "trustedKeys" | "secrets" | "systemHealth">,
  host: FleetHost,
  planned: PlannedHost,
  deltaTool: StorePath | undefined,
): DeployRequest {
  const { desired } = planned;
  const policy = policyOf(options, host, prepared.systemHealth.get(desired));
  const reboot = { timeout: policy.rebootTimeout, rollback: policy.rebootRollback };
  const judgeBoot = judgeBootRequest(planned, reboot);
  return buildDeployRequest({
    path: desired,
    action: options.action,
    substituters: prepared.substituters,
    trustedKeys: prepared.trustedKeys,
    checks: policy,
    host,
    activationTimeout: policy.activationTimeout,
    secrets: prepared.secrets.get(host.name),
    ...(planned.rebooting ? { reboot } : {}),
    ...(judgeBoot === undefined ? {} : { judgeBoot }),
    // The next deploy judges the boot this one sets (docs/reboots.md).
    recordBoot: true,
    deltaTool,
    expect: options.rollback?.expect?.get(host.name) ?? surveyedSystem(host, planned),
  });
}

/**
 * The system an ssh host answered the survey with: at its turn the host is activated only if
 * it still runs it (activate --expect-current), so that a deploy or rollback another operator
 * ran there meanwhile is not overwritten unseen; the host is refused, "changed since". Hosts
 * whose system the plan took from a record (ssm, agent) are judged by their own delivery.
 */
function surveyedSystem(host: FleetHost, planned: PlannedHost): StorePath | undefined {
  return host.delivery === "ssh" && planned.stored === undefined ? planned.current : undefined;
}

/**
 * Every planned host's request, resolved once when the plan is made: the rollout and the
 * channel read them from here and never call back into planning.
 */
export function hostRequests(
  options: Pick<DeployOptions, "action" | "fleet" | "policy" | "policyFlags" | "rollback">,
  prepared: Pick<Prepared, "substituters" | "trustedKeys" | "secrets" | "systemHealth">,
  hosts: readonly FleetHost[],
  plan: Pick<DeployPlan, "hosts">,
  /** The zstd each host applies deltas with (`PlanDeltaPairs.tools`): none, every path whole. */
  deltaTools: ReadonlyMap<string, StorePath>,
): Map<string, DeployRequest> {
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const requests = new Map<string, DeployRequest>();
  for (const planned of plan.hosts) {
    const host = byName.get(planned.host);
    if (host === undefined || planned.action === "unreachable") continue;
    requests.set(
      planned.host,
      deployRequest(options, prepared, host, planned, deltaTools.get(planned.host)),
    );
  }
  return requests;
}
