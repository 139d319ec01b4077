// The table printed when a deploy ends: one row per host and a line of counts. Pure.

import type { HostResult } from "../deploy/events.js";
import { runsAfter } from "../deploy/runs-after.js";
import type { DeployPlan } from "../fleet/plan.js";
import { describePrune } from "../status/prune-report.js";
import { formatTable, oneLine, storeName } from "./plan-format.js";

/** Seconds for people: `2.1s`, `1m05s`. */
export function formatDuration(seconds: number): string {
  const s = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  if (s < 59.95) return `${s.toFixed(1)}s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
}

export type ResultKind = "activated" | "failed" | "up-to-date" | "not-started" | "unreachable";

export function resultKind(result: HostResult): ResultKind {
  const o = result.outcome;
  return o.status === "skipped" ? o.reason : o.status;
}

/** The result column: "activated", "FAILED (rolled back)", "skipped (up to date)", … */
export function resultLabel(result: HostResult): string {
  const o = result.outcome;
  switch (o.status) {
    case "activated":
      return "activated";
    case "failed":
      return o.rolledBack ? "FAILED (rolled back)" : "FAILED (not rolled back)";
    case "skipped":
      switch (o.reason) {
        case "up-to-date":
          return "skipped (up to date)";
        case "not-started":
          return "not started";
        case "unreachable":
          return "unreachable";
      }
  }
}

/**
 * The summary table. With the plan, a "runs" column says which system each host runs as far
 * as the deployer knows: the new one, the one it ran before, or "unknown" (a host that failed
 * without rolling back, or is still settling).
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
  };
  for (const result of results) {
    counts[resultKind(result)]++;
    const row = summaryRow(result);
    rows.push(plan ? withRuns(row, runs(result, plan)) : row);
  }
  const parts = [`${counts.activated} activated`, `${counts.failed} failed`];
  if (counts["up-to-date"] > 0) parts.push(`${counts["up-to-date"]} up to date`);
  if (counts.unreachable > 0) parts.push(`${counts.unreachable} unreachable`);
  if (counts["not-started"] > 0) parts.push(`${counts["not-started"]} not started`);
  return [...formatTable(rows), `${parts.join(", ")} in ${formatDuration(seconds)}`].join("\n");
}

/** The row with the "runs" cell after the result. */
function withRuns(row: readonly string[], cell: string): string[] {
  return [...row.slice(0, 2), cell, ...row.slice(2)];
}

/** The name of the system the host runs now, as far as the deployer knows (runs-after.ts). */
export function runs(result: HostResult, plan: DeployPlan): string {
  const current = plan.hosts.find((p) => p.host === result.host)?.current;
  const now = runsAfter(result, current, plan.action);
  if (now === undefined) return "unknown";
  const name = storeName(now);
  return result.outcome.status === "failed" && now === result.desired ? `${name} (failed)` : name;
}

function summaryRow(result: HostResult): string[] {
  const o = result.outcome;
  const time = o.status === "skipped" ? "-" : formatDuration(result.seconds);
  switch (o.status) {
    case "activated":
      return [
        result.host,
        resultLabel(result),
        "-",
        o.generation?.toString() ?? "-",
        time,
        o.pruned === undefined ? "" : oneLine(describePrune(o.pruned)),
      ];
    case "failed":
      return [result.host, resultLabel(result), o.phase, "-", time, oneLine(o.message)];
    case "skipped":
      return [result.host, resultLabel(result), "-", "-", time, oneLine(o.message ?? "")];
  }
}
