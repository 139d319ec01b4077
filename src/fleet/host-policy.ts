// Policy per role: the fleet's `policy`, then the `policies` entries that match a host (by
// @tag, then by name), then the command line's flags, merged key by key. Pure.
//
//   "policy":   { "confirmTimeout": 30 },
//   "policies": { "@api":  { "health": { "http": [{ "url": "http://{address}:8080/health" }] } },
//                 "web1":  { "activationTimeout": 1200 } }
//
// Order, later winning: `policy`; each `@tag` entry the host has, in the file's order; the
// entry named by the host's name (or a name glob); the flags. `health.http` and
// `health.commands` are each replaced whole by the latest entry that states them, so an entry
// can also take a check away (`"commands": []`). `maxFailures` is the rollout's alone. The
// types of an entry (`PolicyOverride`, `PolicyRule`) are the fleet's, in fleet.ts.
import type { Fleet, FleetHost, PolicyOverride, PolicyRule, RolloutPolicy } from "./fleet.js";
import { parseSelector, type SelectorTerm, termMatcher } from "./select.js";

/** The selector's single term; `policies` keys are one term each (the parser checks). */
export function ruleTerm(rule: Pick<PolicyRule, "selector">): SelectorTerm {
  const [term] = parseSelector(rule.selector);
  if (term === undefined) throw new Error(`policies key "${rule.selector}" has no term`);
  return term;
}

/** The rules that apply to `host`, in merge order: tags first, then names, each in file order. */
export function rulesFor(
  rules: readonly PolicyRule[],
  host: Pick<FleetHost, "name" | "tags">,
): PolicyRule[] {
  const matching = rules.filter((r) => termMatcher(ruleTerm(r))(host));
  return [
    ...matching.filter((r) => ruleTerm(r).kind === "tag"),
    ...matching.filter((r) => ruleTerm(r).kind === "name"),
  ];
}

/** `base` with `override`'s keys laid over it. */
export function applyOverride(base: RolloutPolicy, override: PolicyOverride): RolloutPolicy {
  const { health, ...numbers } = override;
  const set = Object.fromEntries(Object.entries(numbers).filter(([, v]) => v !== undefined));
  return {
    ...base,
    ...set,
    health: {
      http: health?.http ?? base.health.http,
      commands: health?.commands ?? base.health.commands,
    },
  };
}

/** The policy `host` is deployed with. */
export function hostPolicy(
  base: RolloutPolicy,
  rules: readonly PolicyRule[],
  host: Pick<FleetHost, "name" | "tags">,
  flags: PolicyOverride = {},
): RolloutPolicy {
  const merged = rulesFor(rules, host).reduce((p, r) => applyOverride(p, r.override), base);
  return applyOverride(merged, flags);
}

/**
 * The role `host` has: the `policies` entries that apply to it, as written, in merge order
 * ("" when none does: the fleet's policy alone), but for an entry that names the host alone (its
 * name, no `*`): that tunes one host (a timeout, a check) and leaves it in its role, whose
 * canaries it shares. A name glob (`web*`) or a tag is a role's.
 */
export function roleOf(
  rules: readonly PolicyRule[],
  host: Pick<FleetHost, "name" | "tags">,
): string {
  return rulesFor(rules, host)
    .filter((r) => !namesOneHost(r))
    .map((r) => r.selector)
    .join(" ");
}

/** Whether a `policies` entry is keyed by one host's name (no tag, no `*`). */
function namesOneHost(rule: Pick<PolicyRule, "selector">): boolean {
  const term = ruleTerm(rule);
  return term.kind === "name" && !term.pattern.includes("*");
}

export type { PolicyOverride, PolicyRule } from "./fleet.js";

/**
 * The longest activation timeout among `hosts`' policies (a role's own, else the fleet's; the
 * fleet's for none): one bound for the switch back of all of them, as a wave's rollback after
 * its bake takes.
 */
export function longestActivationTimeout(
  fleet: Pick<Fleet, "policy" | "policies">,
  hosts: readonly Pick<FleetHost, "name" | "tags">[],
): number {
  if (hosts.length === 0) return fleet.policy.activationTimeout;
  return Math.max(
    ...hosts.map((h) => hostPolicy(fleet.policy, fleet.policies, h).activationTimeout),
  );
}

/**
 * What each agent host keeps of its history by the fleet: its own policy's keepGenerations (a
 * role's, where one sets it), the fleet's for a host it no longer names; 0 keeps all.
 */
export function keepGenerationsOf(
  fleet: Pick<Fleet, "policy" | "policies" | "hosts">,
): (host: string) => number | undefined {
  const named = new Map(fleet.hosts.map((h) => [h.name, h] as const));
  return (name) => {
    const host = named.get(name);
    const keep =
      host === undefined
        ? fleet.policy.keepGenerations
        : hostPolicy(fleet.policy, fleet.policies, host).keepGenerations;
    return keep > 0 ? keep : undefined;
  };
}
