// The table printed when a deploy ends: one row per host and a line of counts; past
// GROUPED_ABOVE hosts, the hosts that failed or could not be reached in full and the rest
// counted by result and system. Pure.

import type { HostResult } from "../deploy/events.js";
import { generationAfter, runsAfter } from "../deploy/runs-after.js";
import type { Action } from "../fleet/action.js";
import type { DeployPlan } from "../fleet/plan.js";
import { sumDeltaReports } from "../status/delta-report.js";
import { describePrune } from "../status/prune-report.js";
import { GROUPED_ABOVE, grouped, listHosts } from "./fleet-size.js";
import { formatBytes } from "./format.js";
import { formatTable, oneLine, plural, storeName } from "./plan-format.js";

/** Seconds for people: `2.1s`, `1m05s`. */
export function formatDuration(seconds: number): string {
  const s = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  if (s < 59.95) return `${s.toFixed(1)}s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
}

export type ResultKind =
  | "activated"
  | "failed"
  | "up-to-date"
  | "not-started"
  | "unreachable"
  | "refused";

export function resultKind(result: HostResult): ResultKind {
  const o = result.outcome;
  return o.status === "skipped" ? o.reason : o.status;
}

/**
 * The result column: "activated", "FAILED (rolled back)", "skipped (up to date)", … A boot
 * deploy's success is "set to boot": the host runs what it ran, and boots the new system next.
 */
export function resultLabel(result: HostResult, action?: Action): string {
  const o = result.outcome;
  switch (o.status) {
    case "activated":
      return activatedWord(action);
    case "failed":
      // Not reached (unreachable counted as a failure, a host key refused): nothing changed.
      if (o.phase === "connect") return "FAILED (nothing changed)";
      return o.rolledBack ? "FAILED (rolled back)" : "FAILED (not rolled back)";
    case "skipped":
      switch (o.reason) {
        case "up-to-date":
          return "skipped (up to date)";
        case "not-started":
          return "not started";
        case "unreachable":
          return "unreachable";
        case "refused":
          return "REFUSED (changed since)";
      }
  }
}

/** What a host's success did, by the deploy's action. */
function activatedWord(action: Action | undefined): string {
  return action === "boot" ? "set to boot" : "activated";
}

/**
 * The summary table. With the plan, a "runs" column says which system each host runs as far
 * as the deployer knows: the new one, the one it ran before, or "unknown" (a host that failed
 * without rolling back, or is still settling). Past GROUPED_ABOVE hosts, only the hosts that
 * failed or could not be reached have rows; the others are counted (groupedSummary).
 */
export function formatDeploySummary(
  results: readonly HostResult[],
  seconds: number,
  plan?: DeployPlan,
): string {
  const header = ["host", "result", "phase", "generation", "time", "message"];
  const rows: string[][] = [plan ? withRuns(header, "runs") : header];
  const counts: Record<ResultKind, number> = {
    activated: 0,
    failed: 0,
    "up-to-date": 0,
    "not-started": 0,
    unreachable: 0,
    refused: 0,
  };
  const big = grouped(results.length);
  const counted: HostResult[] = [];
  for (const result of results) {
    counts[resultKind(result)]++;
    if (big && !needsPerson(result)) {
      counted.push(result);
      continue;
    }
    const row = summaryRow(result, plan);
    rows.push(plan ? withRuns(row, runs(result, plan)) : row);
  }
  const parts = [`${counts.activated} ${activatedWord(plan?.action)}`, `${counts.failed} failed`];
  if (counts["up-to-date"] > 0) parts.push(`${counts["up-to-date"]} up to date`);
  if (counts.unreachable > 0) parts.push(`${counts.unreachable} unreachable`);
  if (counts["not-started"] > 0) parts.push(`${counts["not-started"]} not started`);
  if (counts.refused > 0) parts.push(`${counts.refused} refused`);
  const table = big
    ? [
        ...groupedSummary(counted, results.length, plan),
        ...(rows.length > 1 ? formatTable(rows) : []),
      ]
    : formatTable(rows);
  return [
    ...table,
    ...deltaLine(results),
    `${parts.join(", ")} in ${formatDuration(seconds)}`,
  ].join("\n");
}

/** What came by delta over the whole rollout, when any host used deltas (docs/deltas.md). */
function deltaLine(results: readonly HostResult[]): string[] {
  const totals = sumDeltaReports(
    results.map((r) => (r.outcome.status === "activated" ? r.outcome.delta : undefined)),
  );
  if (totals.counted === 0) return [];
  const bytes =
    totals.bytes === null || totals.narBytes === null
      ? ""
      : ` (${formatBytes(totals.bytes)} fetched for ${formatBytes(totals.narBytes)} of NARs)`;
  const whole =
    totals.wholeNarBytes === null ? "" : ` (${formatBytes(totals.wholeNarBytes)} of NARs)`;
  const failed = totals.failed > 0 ? `; ${totals.failed} deltas did not apply` : "";
  return [
    `deltas: ${plural(totals.paths, "path")} by delta${bytes}, ${plural(totals.wholePaths, "path")} whole${whole} on ${plural(totals.counted, "host")}${failed}`,
  ];
}

/** Whether a big summary gives the host its own row: it failed, or could not be reached. */
function needsPerson(result: HostResult): boolean {
  const kind = resultKind(result);
  return kind === "failed" || kind === "unreachable" || kind === "refused";
}

/** The hosts of a big summary that need nobody: counted by result (and system), a few named. */
function groupedSummary(
  counted: readonly HostResult[],
  total: number,
  plan: DeployPlan | undefined,
): string[] {
  const groups = new Map<string, { cells: string[]; hosts: string[] }>();
  // The plan's hosts by name, once: a thousand hosts are not looked up one by one.
  const planned = plan === undefined ? undefined : new Map(plan.hosts.map((h) => [h.host, h]));
  for (const result of counted) {
    const cells = [resultLabel(result, plan?.action)];
    if (plan !== undefined) {
      const current = planned?.get(result.host)?.current;
      cells.push(runsName(result, current, plan));
    }
    const key = cells.join("\n");
    const group = groups.get(key) ?? { cells, hosts: [] };
    group.hosts.push(result.host);
    groups.set(key, group);
  }
  const header = `${plural(total, "host")} (past ${GROUPED_ABOVE} hosts the summary counts those that need nobody; --json lists each):`;
  const rows = [
    ["hosts", "result", ...(plan === undefined ? [] : ["runs"]), "which"],
    ...[...groups.values()].map((g) => [String(g.hosts.length), ...g.cells, listHosts(g.hosts)]),
  ];
  return groups.size === 0 ? [header] : [header, ...formatTable(rows)];
}

/** The row with the "runs" cell after the result. */
function withRuns(row: readonly string[], cell: string): string[] {
  return [...row.slice(0, 2), cell, ...row.slice(2)];
}

/** The name of the system the host runs now, as far as the deployer knows (runs-after.ts). */
export function runs(result: HostResult, plan: DeployPlan): string {
  return runsName(result, plan.hosts.find((p) => p.host === result.host)?.current, plan);
}

function runsName(result: HostResult, current: string | undefined, plan: DeployPlan): string {
  const now = runsAfter(result, current, plan.action);
  if (now === undefined) return "unknown";
  const name = storeName(now);
  if (result.outcome.status === "failed" && now === result.desired) return `${name} (failed)`;
  // A host the rollout never reached is known as the survey found it: before a pause, which
  // can last hours, that is no word on what it runs now.
  const o = result.outcome;
  const untouched = o.status === "skipped" && o.reason === "not-started";
  return untouched && (plan.pauses?.length ?? 0) > 0 ? `${name} (when surveyed)` : name;
}

/** The generation a host that was not activated is on, as its status record says (with the plan). */
function generationKept(result: HostResult, plan: DeployPlan | undefined): string {
  if (plan === undefined) return "-";
  const surveyed = plan.hosts.find((p) => p.host === result.host);
  return generationAfter(result, surveyed, plan.action)?.toString() ?? "-";
}

function summaryRow(result: HostResult, plan: DeployPlan | undefined): string[] {
  const o = result.outcome;
  const time = o.status === "skipped" ? "-" : formatDuration(result.seconds);
  const kept = generationKept(result, plan);
  switch (o.status) {
    case "activated":
      return [
        result.host,
        resultLabel(result, plan?.action),
        "-",
        o.generation?.toString() ?? "-",
        time,
        [
          ...(o.bakeInterrupted === undefined
            ? []
            : [`bake interrupted after ${formatDuration(o.bakeInterrupted)}: not verified by it`]),
          ...(o.pruned === undefined ? [] : [oneLine(describePrune(o.pruned))]),
        ].join("; "),
      ];
    case "failed":
      return [result.host, resultLabel(result), o.phase, kept, time, oneLine(o.message)];
    case "skipped":
      return [result.host, resultLabel(result), "-", kept, time, oneLine(o.message ?? "")];
  }
}
