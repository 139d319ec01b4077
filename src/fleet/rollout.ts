// Rollout shape: which hosts go in which wave, and when to stop starting waves. Pure; the
// engine that runs the waves sits on top of it.
import { InputError } from "../errors.js";
import type { RolloutPolicy } from "./fleet.js";

export type WaveKind = "canary" | "main";

export interface Wave<T> {
  /** From 0, in the order the waves run. */
  readonly index: number;
  readonly kind: WaveKind;
  readonly hosts: readonly T[];
}

/**
 * The first `canary` hosts form the canary wave, then the rest go in waves of at most
 * `parallel`. No wave is larger than `parallel`: a canary larger than it is split into
 * several canary waves. Empty waves are never produced.
 */
export function planWaves<T>(
  hosts: readonly T[],
  policy: Pick<RolloutPolicy, "canary" | "parallel">,
): Wave<T>[] {
  const { canary, parallel } = policy;
  if (!Number.isSafeInteger(parallel) || parallel < 1) {
    throw new InputError("bad-policy", `parallel must be a whole number >= 1, not ${parallel}`);
  }
  if (!Number.isSafeInteger(canary) || canary < 0) {
    throw new InputError("bad-policy", `canary must be a whole number >= 0, not ${canary}`);
  }
  const waves: Wave<T>[] = [];
  const add = (kind: WaveKind, group: readonly T[]) => {
    for (let start = 0; start < group.length; start += parallel) {
      waves.push({ index: waves.length, kind, hosts: group.slice(start, start + parallel) });
    }
  };
  add("canary", hosts.slice(0, canary));
  add("main", hosts.slice(canary));
  return waves;
}

/** Whether to start no new wave: once failures exceed `maxFailures`. */
export function shouldStop(failures: number, policy: Pick<RolloutPolicy, "maxFailures">): boolean {
  return failures > policy.maxFailures;
}

/**
 * After a wave: a failed canary always stops the rollout (that is what a canary is for);
 * otherwise the failure budget decides.
 */
export function shouldStopAfterWave(
  wave: Pick<Wave<unknown>, "kind">,
  waveFailures: number,
  totalFailures: number,
  policy: Pick<RolloutPolicy, "maxFailures">,
): boolean {
  if (wave.kind === "canary" && waveFailures > 0) return true;
  return shouldStop(totalFailures, policy);
}
