// The plan's closure diffs for people: one line per group of hosts with the same changes, or
// with `--diff` every change, as nvd prints them; hosts without a diff say why. Pure.
import type { PlanDiffGroup, PlanDiffs } from "../fleet/plan-diffs.js";
import { formatClosureDiff, formatClosureDiffSummary } from "../nix/closure-diff.js";
import { withoutControls } from "../util/text.js";

/** Hosts a summary line names at most; the rest are counted (`--diff` names them all). */
const NAMED_HOSTS = 6;

const FROM: Readonly<Record<PlanDiffGroup["currentFrom"], string>> = {
  cache: "the running system's closure from the cache",
  "local-store": "the running system's closure from the local store",
  host: "the running system's closure from the host",
};

/**
 * The `package changes:` section under the plan's table; none when no host changes system. `full`:
 * each group's whole diff, indented under a line naming its hosts and where their running
 * closure was read.
 */
export function formatPlanDiffs(diffs: PlanDiffs | undefined, full: boolean): string[] {
  if (diffs === undefined || diffs.groups.length + diffs.unavailable.length === 0) return [];
  const lines = ["package changes:"];
  for (const group of diffs.groups) {
    if (full) {
      lines.push(`  ${group.hosts.join(", ")} (${FROM[group.currentFrom]}):`);
      for (const line of formatClosureDiff(group.diff).split("\n")) lines.push(`    ${line}`);
    } else {
      lines.push(`  ${nameHosts(group.hosts)}: ${formatClosureDiffSummary(group.diff)}`);
    }
  }
  // Many hosts without a diff (a big fleet's first deploy): one line per reason.
  if (diffs.unavailable.length > NAMED_HOSTS) {
    const byReason = new Map<string, string[]>();
    for (const { host, reason } of diffs.unavailable) {
      const hosts = byReason.get(reason) ?? [];
      hosts.push(host);
      byReason.set(reason, hosts);
    }
    for (const [reason, hosts] of byReason) lines.push(`  ${nameHosts(hosts)}: no diff: ${reason}`);
  } else {
    for (const { host, reason } of diffs.unavailable) lines.push(`  ${host}: no diff: ${reason}`);
  }
  return lines.map((line) => withoutControls(line));
}

function nameHosts(hosts: readonly string[]): string {
  if (hosts.length <= NAMED_HOSTS) return hosts.join(", ");
  const shown = NAMED_HOSTS - 1;
  return `${hosts.slice(0, shown).join(", ")} and ${hosts.length - shown} more`;
}
