// The plan's pauses for people: after which wave the rollout waits for an operator, for how
// long and what then; and the pauseAfter entries that make no pause in this plan, with why.
import type { DeployPlan } from "../fleet/plan.js";

export function formatPlanPauses(plan: Pick<DeployPlan, "pauses" | "unusedPauses">): string[] {
  const pauses = plan.pauses ?? [];
  const unused = plan.unusedPauses ?? [];
  if (pauses.length === 0 && unused.length === 0) return [];
  return [
    "pauses:",
    ...pauses.map(
      (p) =>
        `  after wave ${p.afterWave}${p.kind === "canary" ? " (canary)" : ""}: waits for 'nixship rollout resume ID' or 'nixship rollout abort ID' (the deploy names ID), at most ${waitText(p.timeout)}, then ${p.onTimeout === "abort" ? "abort (roll back)" : "resume"}`,
    ),
    ...unused.map(
      (u) =>
        `  pauseAfter ${typeof u.after === "number" ? u.after : `"${u.after}"`}: no pause (${u.why})`,
    ),
  ];
}

/** Seconds as a person reads a deadline: 90s, 15m, 1h, 1h30m, 7d. */
export function waitText(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours >= 48 && minutes % (24 * 60) === 0) return `${hours / 24}d`;
  return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
}
