// The plan's bakes for people: per role, how long its waves hold once confirmed, how often they
// are measured, and each query of its analysis with its condition, with the plan's note under a
// query that may read what a host ran before. Pure; `--json` carries each host's bake
// (plan.hosts[].bake) and the notes (plan.bakeNotes).
import { type BakeReachNote, conditionText, formatValue } from "../fleet/analysis.js";
import type { HostBake } from "../fleet/bake.js";
import type { DeployPlan } from "../fleet/plan.js";
import { withoutControls } from "../util/text.js";
import { listHosts } from "./fleet-size.js";
import { plural } from "./format.js";

export function formatPlanBakes(
  plan: Pick<DeployPlan, "hosts" | "bakeNotes"> & { readonly waves?: DeployPlan["waves"] },
): string[] {
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
        `  ${role === "" ? "" : `${role}: `}${listHosts(hosts)}: ${bake.seconds}s, checks and queries ${bake.interval < bake.seconds ? `every ${bake.interval}s` : "once, at its end"}; a host that fails rolls its wave back`,
      ),
      ...bake.analysis.flatMap((q) => [
        withoutControls(
          `    ${q.name}: ${q.query.replace(/\s+/g, " ")} is ${conditionText(q)}${q.failureLimit > 0 ? `, ${plural(q.failureLimit, "failed measurement")} tolerated` : ""}; no data ${q.noData === "fail" ? "fails" : "waits"}`,
        ),
        ...reachNote(
          plan.bakeNotes?.find((n) => n.query === q.name && n.hosts.includes(hosts[0] as string)),
        ),
      ]),
    ]),
    ...unbaselinedNote(plan),
    ...(unrepeated.length === 0
      ? []
      : [
          withoutControls(
            `  ${listHosts(unrepeated.map((h) => h.host))}: agent hosts: their command checks run at activation only, not again during the bake (HTTP checks and the analysis are repeated)`,
          ),
        ]),
  ];
}

/** The note under a query whose first measurements may read what a host ran before its switch. */
function reachNote(note: BakeReachNote | undefined): string[] {
  if (note === undefined) return [];
  const instead =
    note.failureLimit === undefined ? "" : `, or a failureLimit of ${note.failureLimit},`;
  const offset = note.offset ?? 0;
  const range = note.rangeAtMost - offset;
  // What keeps the previous system out: a range, when its offset leaves room for one.
  const fix =
    range > 0
      ? `a range of at most ${formatValue(range)}s${offset > 0 ? ` (with its offset of ${formatValue(offset)}s)` : ""}${instead} keeps that out`
      : `its offset alone reads ${formatValue(offset)}s back, so no range keeps that out: a smaller offset${instead} does`;
  return [
    `      it reads ${formatValue(note.reach)}s back, more than the interval × (failureLimit + 1) = ${formatValue(note.rangeAtMost)}s: its first measurements may count what a host ran before its switch; ${fix}`,
  ];
}

/**
 * Hosts whose baseline queries will compare with nothing: no host of their role is in another
 * wave of this rollout (`--on` a canary alone, say), so those comparisons pass. A role's last
 * wave, whose earlier waves were compared, is not noted: that is what a baseline is.
 */
function unbaselinedNote(plan: {
  readonly hosts: DeployPlan["hosts"];
  readonly waves?: DeployPlan["waves"];
}): string[] {
  if (plan.waves === undefined) return [];
  const waveOf = new Map(plan.waves.flatMap((w) => w.hosts.map((h) => [h, w.wave] as const)));
  const wavesOfRole = new Map<string, Set<number>>();
  for (const h of plan.hosts) {
    const wave = waveOf.get(h.host);
    if (wave === undefined) continue;
    const role = h.role ?? "";
    wavesOfRole.set(role, (wavesOfRole.get(role) ?? new Set()).add(wave));
  }
  const alone = plan.hosts.filter(
    (h) =>
      h.bake?.analysis.some((q) => q.baseline !== undefined) === true &&
      waveOf.has(h.host) &&
      (wavesOfRole.get(h.role ?? "")?.size ?? 0) === 1,
  );
  if (alone.length === 0) return [];
  const queries = [
    ...new Set(
      alone.flatMap((h) => (h.bake?.analysis ?? []).filter((q) => q.baseline).map((q) => q.name)),
    ),
  ];
  return [
    withoutControls(
      `  ${listHosts(alone.map((h) => h.host))}: no host of their role is in another wave of this rollout, so ${queries.join(", ")} compare${queries.length === 1 ? "s" : ""} with no baseline and pass${queries.length === 1 ? "es" : ""}: select more of the role, or give a \`max\``,
    ),
  ];
}
