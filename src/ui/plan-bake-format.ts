// The plan's bakes for people: per role, how long its waves hold once confirmed, how often they
// are measured, and each query of its analysis with its condition. Pure; `--json` carries each
// host's bake (plan.hosts[].bake).
import { conditionText, formatValue, previousSystemReach } from "../fleet/analysis.js";
import type { HostBake } from "../fleet/bake.js";
import type { DeployPlan } from "../fleet/plan.js";
import { withoutControls } from "../util/text.js";
import { listHosts } from "./fleet-size.js";

export function formatPlanBakes(plan: Pick<DeployPlan, "hosts">): string[] {
  const byBake = new Map<string, { hosts: string[]; bake: HostBake; role: string }>();
  for (const host of plan.hosts) {
    if (host.bake === undefined) continue;
    const role = host.role ?? "";
    const key = `${role}\0${JSON.stringify(host.bake)}`;
    const entry = byBake.get(key) ?? { hosts: [], bake: host.bake, role };
    entry.hosts.push(host.host);
    byBake.set(key, entry);
  }
  if (byBake.size === 0) return [];
  // Only an agent runs commands on its host: the deployer cannot repeat its command checks.
  const unrepeated = plan.hosts.filter(
    (h) =>
      h.bake !== undefined &&
      (h.checks?.commands.length ?? 0) > 0 &&
      h.pinning?.pinned === true &&
      h.pinning.by === "agent",
  );
  return [
    "bake (after each wave's confirmation, before the next wave):",
    ...[...byBake.values()].flatMap(({ hosts, bake, role }) => [
      withoutControls(
        `  ${role === "" ? "" : `${role}: `}${listHosts(hosts)}: ${bake.seconds}s, checks and queries every ${bake.interval}s; a host that fails rolls its wave back`,
      ),
      ...bake.analysis.flatMap((q) => [
        withoutControls(
          `    ${q.name}: ${q.query.replace(/\s+/g, " ")} is ${conditionText(q)}${q.failureLimit > 0 ? `, ${q.failureLimit} failed measurements tolerated` : ""}; no data ${q.noData === "fail" ? "fails" : "waits"}`,
        ),
        ...reachNote(q, bake),
      ]),
    ]),
    ...(unrepeated.length === 0
      ? []
      : [
          withoutControls(
            `  ${listHosts(unrepeated.map((h) => h.host))}: agent hosts: their command checks run at activation only, not again during the bake (HTTP checks and the analysis are repeated)`,
          ),
        ]),
  ];
}

/** A note under a query whose first measurements may read what a host ran before its switch. */
function reachNote(query: HostBake["analysis"][number], bake: HostBake): string[] {
  const rounds = Math.floor(bake.seconds / bake.interval);
  const reach = previousSystemReach(query, bake.interval, rounds);
  if (reach === undefined) return [];
  const instead =
    reach.failureLimit === undefined ? "" : `, or a failureLimit of ${reach.failureLimit},`;
  return [
    `      it reads ${formatValue(reach.reach)}s back, more than the interval × (failureLimit + 1) = ${formatValue(reach.rangeAtMost)}s: its first measurements may count what a host ran before its switch; a range of at most ${formatValue(reach.rangeAtMost)}s${instead} keeps that out`,
  ];
}
