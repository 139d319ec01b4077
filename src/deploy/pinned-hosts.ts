// What a deploy refuses about pinned hosts before it changes one (docs/pinned-hosts.md): a
// host whose policy requires pinning but is not pinned (`policy.requirePinned`), and a command
// check that a host reached through its pinned nixship-activate (ssh by sudo, or a host that
// answered through it, as an ssm host does) would refuse, since such a host runs as root only
// the checks its own system declares.
import { InputError } from "../errors.js";
import {
  type FleetHost,
  type HealthChecks,
  type RolloutPolicy,
  reachedBySudo,
  type SshSettings,
} from "../fleet/fleet.js";
import { type DeployPlan, unpinnedRequired } from "../fleet/plan.js";
import type { StorePath } from "../nix/store-path.js";

export interface PinnedHostsInput {
  readonly plan: Pick<DeployPlan, "hosts">;
  readonly hosts: readonly FleetHost[];
  readonly ssh: Pick<SshSettings, "sudo">;
  /** The policy a host is deployed with (its system's own checks included). */
  readonly policyFor: (host: FleetHost, desired: StorePath) => RolloutPolicy;
  /** The checks each system declares itself (nixship/health.json). */
  readonly systemHealth: ReadonlyMap<StorePath, HealthChecks>;
}

/** Throws, naming every host and the fix, when the plan cannot go ahead on pinned terms. */
export function refuseUnpinnedHosts(input: PinnedHostsInput): void {
  const byName = new Map(input.hosts.map((h) => [h.name, h]));
  const desiredOf = new Map(input.plan.hosts.map((h) => [h.host, h.desired]));
  const policyOf = (name: string) => {
    const host = byName.get(name);
    const desired = desiredOf.get(name);
    if (host === undefined || desired === undefined) throw new Error(`${name} is not planned`);
    return input.policyFor(host, desired);
  };
  const unpinned = unpinnedRequired(input.plan, (name) => policyOf(name).requirePinned);
  if (unpinned.length > 0) {
    throw new InputError(
      "host-not-pinned",
      `policy.requirePinned: ${unpinned.map((u) => `${u.host}: ${u.why}`).join("; ")}`,
      {
        hint: "enable nixosModules.host on those hosts and deploy them once as root, then set ssh.sudo (docs/pinned-hosts.md); or lift requirePinned for them",
      },
    );
  }
  const undeclared = input.plan.hosts.flatMap((planned) => {
    const host = byName.get(planned.host);
    if (planned.action !== "activate" || host === undefined) return [];
    const bySudo = host.delivery === "ssh" && reachedBySudo(input.ssh, host);
    const pinned = planned.pinning?.pinned === true && planned.pinning.by === "nixship-activate";
    if (!bySudo && !pinned) return [];
    const own = new Set(input.systemHealth.get(planned.desired)?.commands.map((c) => c.run));
    return policyOf(planned.host)
      .health.commands.filter((c) => !own.has(c.run))
      .map((c) => `${planned.host}: \`${c.run}\``);
  });
  if (undeclared.length > 0) {
    throw new InputError(
      "pinned-host-command-check",
      `a pinned host runs as root only the command checks its system declares, and these are the fleet file's: ${undeclared.join("; ")}`,
      {
        hint: 'declare them in the host\'s configuration (services.nixship-host.healthChecks), or take them off its policy ("commands": [] in its policies entry); HTTP checks run from the deployer as before',
      },
    );
  }
}
