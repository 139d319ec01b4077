// Whether the system a host runs came from a rollout that never finished baking it there: the
// bake was interrupted, or was under way when its deployer stopped writing (killed, or its
// machine lost). No bake judged that system, so no view calls the host in step and the next
// deploy bakes it again (deploy/plan-recorded-outcomes.ts). Pure.
import type { Ask } from "./fleet-asks.js";

/** The rollout whose bake of the host's system never ended, and what became of the bake. */
export interface UnbakedBy {
  readonly rollout: string;
  readonly why: string;
  /** What the host ran before that rollout (null: not known). */
  readonly before: string | null;
}

/**
 * The unfinished bake `ask` (the fleet's newest ask of the host, judged as the views judge it:
 * fleet-asks.ts) tells of `running`, the system the host runs: the rollout gave it that system,
 * and its bake there was interrupted, or was under way when its deployer stopped writing (the
 * ask is then failed by that: ended-rollout.ts). A rollout whose deployer is still at work is its
 * own to finish.
 */
export function unfinishedBake(
  ask: Ask | undefined,
  running: string | null | undefined,
): UnbakedBy | undefined {
  const bake = ask?.entry.bake;
  if (ask === undefined || bake === undefined || ask.rollout.live === true) return undefined;
  if (running === undefined || running === null || ask.system !== running) return undefined;
  let why: string;
  if (bake.state === "interrupted" && ask.entry.state === "confirmed") {
    why = "its bake was interrupted";
  } else if (bake.state === "baking") {
    why = `its bake never ended${ask.entry.message === null ? "" : `: ${ask.entry.message}`}`;
  } else {
    return undefined;
  }
  return { rollout: ask.rollout.id, why, before: ask.entry.before ?? null };
}
