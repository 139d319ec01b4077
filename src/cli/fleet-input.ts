// What the fleet commands (build, plan, deploy, rollback, status) share: the fleet file and
// selection flags, rollout overrides, and the renderer for their events.
import { dirname, resolve } from "node:path";
import { type Action, parseAction } from "../fleet/action.js";
import { type Fleet, POLICY_DEFAULTS, type RolloutPolicy } from "../fleet/fleet.js";
import { applyOverride, type PolicyOverride } from "../fleet/host-policy.js";
import { DEFAULT_FLEET_FILE, loadFleet } from "../fleet/load-fleet.js";
import { PRUNE_GC_TIMEOUT } from "../host/activation.js";
import type { CliIO } from "./command.js";
import { parseIntFlag } from "./command.js";

export const FLEET_FLAGS = {
  fleet: { type: "string" },
  on: { type: "string" },
  json: { type: "boolean" },
} as const;

export const FLEET_HELP = `  --fleet FILE       the fleet file (default: $NIXSHIP_FLEET, else ./${DEFAULT_FLEET_FILE})
  --on SELECTOR      hosts by name or tag: web1,@web,@db-* (default: every host)
  --json             machine-readable output on stdout`;

export interface FleetInput {
  readonly fleet: Fleet;
  readonly fleetFile: string;
  readonly fleetDir: string;
}

export async function readFleetInput(
  values: { fleet?: string | undefined },
  io: CliIO,
): Promise<FleetInput> {
  const fleetFile = resolve(values.fleet ?? io.env.NIXSHIP_FLEET ?? DEFAULT_FLEET_FILE);
  return { fleet: await loadFleet(fleetFile), fleetFile, fleetDir: dirname(fleetFile) };
}

export const ROLLOUT_FLAGS = {
  action: { type: "string" },
  parallel: { type: "string" },
  "max-failures": { type: "string" },
  canary: { type: "string" },
  "confirm-timeout": { type: "string" },
  "activation-timeout": { type: "string" },
  "keep-generations": { type: "string" },
} as const;

export const ROLLOUT_HELP = `  --action A             switch (default), boot, test or dry-activate
  --parallel N           hosts per wave (fleet policy, else 10)
  --max-failures N       failures tolerated before no new wave starts (else 0)
  --canary N             hosts deployed alone first (else 1; 0: none)
  --confirm-timeout S    seconds a host waits for the deployer's verdict (its HTTP checks,
                         then the confirmation over a new connection) before it rolls itself
                         back (magic rollback; else 30; 0: off, but with HTTP checks a
                         window as long as the checks take, plus 10 s)
  --activation-timeout S seconds an activation (realise, profile, switch) may run on a host;
                         past it the host stops the switch and goes back to its previous
                         system (fleet policy, else ${POLICY_DEFAULTS.activationTimeout})
  --keep-generations N   after a confirmed activation, each host keeps its newest N system
                         generations (and the one a rollback goes to), removes the rest and
                         collects garbage, within ${PRUNE_GC_TIMEOUT} s (fleet policy, else 0: keep all)`;

export function readRollout(
  values: Partial<Record<keyof typeof ROLLOUT_FLAGS, string | undefined>>,
  fleet: Fleet,
  command: string,
): { policy: RolloutPolicy; policyFlags: PolicyOverride; action: Action } {
  const given = {
    parallel: parseIntFlag(values.parallel, "--parallel", command, 1),
    canary: parseIntFlag(values.canary, "--canary", command, 0),
    confirmTimeout: parseIntFlag(values["confirm-timeout"], "--confirm-timeout", command, 0),
    activationTimeout: parseIntFlag(
      values["activation-timeout"],
      "--activation-timeout",
      command,
      1,
    ),
    keepGenerations: parseIntFlag(values["keep-generations"], "--keep-generations", command, 0),
  };
  // The flags win over the fleet's policy and over every role's (policies).
  const policyFlags: PolicyOverride = Object.fromEntries(
    Object.entries(given).filter(([, v]) => v !== undefined),
  );
  const policy: RolloutPolicy = {
    ...applyOverride(fleet.policy, policyFlags),
    maxFailures:
      parseIntFlag(values["max-failures"], "--max-failures", command, 0) ??
      fleet.policy.maxFailures,
  };
  return { policy, policyFlags, action: parseAction(values.action ?? "switch") };
}
