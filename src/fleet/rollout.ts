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
 * How a host's waves are shaped: its policy's canary and parallel, and its role (the
 * `policies` entries that apply to it, host-policy.ts's `roleOf`; "" for the fleet's policy).
 */
export type WaveShape = Pick<RolloutPolicy, "canary" | "parallel"> & { readonly role?: string };

/**
 * The first `canary` hosts form the canary wave, then the rest go in waves of at most
 * `parallel`. No wave is larger than `parallel`: a canary larger than it is split into
 * several canary waves. Empty waves are never produced.
 *
 * With `shapeOf` (policy per role), hosts are grouped by their role and their own `canary`
 * and `parallel`, and each wave takes, of every group, its next `parallel` hosts: the canary
 * waves each role's first `canary` hosts (so two roles with a canary each have one host each
 * in the first wave), then the main waves the rest. One group is the plain case.
 */
export function planWaves<T>(
  hosts: readonly T[],
  policy: Pick<RolloutPolicy, "canary" | "parallel">,
  shapeOf?: (host: T) => WaveShape,
): Wave<T>[] {
  const groups = new Map<string, { shape: WaveShape; hosts: T[] }>();
  for (const host of hosts) {
    const shape: WaveShape = checkShape(shapeOf?.(host) ?? policy);
    const key = `${shape.role ?? ""}\0${shape.parallel}/${shape.canary}`;
    const group = groups.get(key) ?? { shape, hosts: [] };
    group.hosts.push(host);
    groups.set(key, group);
  }
  checkShape(policy);
  const waves: Wave<T>[] = [];
  const rounds = (kind: WaveKind, lists: { parallel: number; hosts: readonly T[] }[]) => {
    for (let round = 0; ; round++) {
      const wave = lists.flatMap((l) =>
        l.hosts.slice(round * l.parallel, (round + 1) * l.parallel),
      );
      if (wave.length === 0) return;
      waves.push({ index: waves.length, kind, hosts: wave });
    }
  };
  const all = [...groups.values()];
  rounds(
    "canary",
    all.map((g) => ({ parallel: g.shape.parallel, hosts: g.hosts.slice(0, g.shape.canary) })),
  );
  rounds(
    "main",
    all.map((g) => ({ parallel: g.shape.parallel, hosts: g.hosts.slice(g.shape.canary) })),
  );
  return waves;
}

function checkShape<S extends Pick<RolloutPolicy, "canary" | "parallel">>(shape: S): S {
  const { canary, parallel } = shape;
  if (!Number.isSafeInteger(parallel) || parallel < 1) {
    throw new InputError("bad-policy", `parallel must be a whole number >= 1, not ${parallel}`);
  }
  if (!Number.isSafeInteger(canary) || canary < 0) {
    throw new InputError("bad-policy", `canary must be a whole number >= 0, not ${canary}`);
  }
  return shape;
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
