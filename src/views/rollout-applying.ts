// Hosts a running rollout is applying now, over their status records: a push deploy writes a
// host's record when the host ends, so between its wave's start and its end the record still
// says what it did before; the rollout record (written as hosts step) says it applies.
import { rolloutAbandoned, rolloutQuiet } from "../status/rollout.js";
import { hostState } from "./host-state.js";
import type { RolloutRead } from "./rollout-watch.js";
import type { StatusRow } from "./status-rows.js";

/**
 * `rows` with each stored row of a host that the running rollout has activating or in its
 * health checks shown as applying, at its step, as of the rollout record's last write (the
 * record's own time is when its last deploy ended); `rows` itself when no host is.
 */
export function withRolloutApplying(
  rows: readonly StatusRow[],
  rollout: RolloutRead,
  now: Date = new Date(),
): readonly StatusRow[] {
  if (rollout.status !== "found" || rollout.record.state !== "running") return rows;
  // A deploy killed mid-rollout applies nothing: its record stays "running" unwritten. For
  // what is shown, three heartbeats unwritten tell it (rolloutQuiet): its hosts are then judged
  // as it ended (status/fleet-asks.ts), not applying.
  if (rolloutQuiet(rollout.record, now) || rolloutAbandoned(rollout.record, now)) return rows;
  const steps = new Map<string, { phase: string | null; system: string | null }>();
  for (const wave of rollout.record.waves) {
    for (const h of wave.hosts) {
      if (h.state === "activating" || h.state === "health") {
        steps.set(h.host, { phase: h.phase, system: h.system });
      }
    }
  }
  if (steps.size === 0) return rows;
  const { startedAt, updatedAt } = rollout.record;
  return rows.map((row) => {
    if (row.source !== "stored") return row;
    const step = steps.get(row.host);
    if (step === undefined) return row;
    const shown = {
      ...row,
      state: "applying",
      phase: step.phase,
      // What it applies is the rollout's, since the rollout began: not its last deploy's.
      desired: step.system ?? row.desired,
      startedAt,
      updatedAt,
      // What its last deploy's failure said is not this one's.
      error: null,
      rolledBack: null,
    } as StatusRow;
    // In step as the state it is shown in says (an applying host is: docs/ci.md), whatever its
    // last deploy left: one state, one exit code.
    return { ...shown, inStep: hostState(shown) === "applying" } as StatusRow;
  });
}
