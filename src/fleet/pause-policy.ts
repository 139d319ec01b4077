// Pauses of a rollout: after which waves it stops until an operator answers (`nixship rollout
// resume|abort ID`), how long it waits, and what it does when nobody answers. Pure: the policy
// keys read from the fleet file, and where the pauses fall among a plan's waves.
import { got, type Problems, readInteger } from "./json-check.js";
import type { JsonPath } from "./json-path.js";

/** `"canary"`: after the last canary wave; a number: after that wave (counted from 1). */
export type PauseAfter = "canary" | number;

export const PAUSE_OUTCOMES = ["abort", "resume"] as const;
/** What a pause comes to when nobody answers it by its deadline. */
export type PauseOutcome = (typeof PAUSE_OUTCOMES)[number];

/** The rollout's pauses (the fleet's `policy` alone sets them: they are the rollout's, as maxFailures). */
export interface PausePolicy {
  /** Never empty; in the order written. */
  readonly after: readonly PauseAfter[];
  /** Seconds each pause waits for an answer. */
  readonly timeout: number;
  readonly onTimeout: PauseOutcome;
}

/** An hour: long enough to look at a canary, short enough that a forgotten deploy ends today. */
export const PAUSE_DEFAULTS = { pauseTimeout: 3600, onPauseTimeout: "abort" } as const;
/** A pause waits at most a week (a release for agents expires after a week by default). */
export const MAX_PAUSE_TIMEOUT = 7 * 86400;
/** Wave numbers `pauseAfter` may name. */
const MAX_WAVE = 100_000;

/** The `policy` keys of pauses, each optional. */
export const PAUSE_KEYS = ["pauseAfter", "pauseTimeout", "onPauseTimeout"] as const;

/**
 * The pause keys of a `policy` object: undefined when it sets no pause. `pauseTimeout` and
 * `onPauseTimeout` without `pauseAfter` are problems: they would silently do nothing.
 */
export function readPausePolicy(
  policy: Record<string, unknown>,
  path: JsonPath,
  problems: Problems,
): PausePolicy | undefined {
  const after = readPauseAfter(policy.pauseAfter, [...path, "pauseAfter"], problems);
  const timeout =
    policy.pauseTimeout === undefined
      ? PAUSE_DEFAULTS.pauseTimeout
      : readInteger(policy.pauseTimeout, [...path, "pauseTimeout"], problems, {
          min: 1,
          max: MAX_PAUSE_TIMEOUT,
        });
  const outcome = policy.onPauseTimeout;
  let onTimeout: PauseOutcome | undefined = PAUSE_DEFAULTS.onPauseTimeout;
  if (outcome !== undefined) {
    onTimeout = (PAUSE_OUTCOMES as readonly unknown[]).includes(outcome)
      ? (outcome as PauseOutcome)
      : problems.add(
          [...path, "onPauseTimeout"],
          `must be one of ${PAUSE_OUTCOMES.join(", ")} (${got(outcome)})`,
        );
  }
  if (policy.pauseAfter === undefined) {
    for (const key of ["pauseTimeout", "onPauseTimeout"] as const) {
      if (policy[key] !== undefined) {
        problems.add([...path, key], "applies to a pause: set pauseAfter too");
      }
    }
    return undefined;
  }
  if (after === undefined || timeout === undefined || onTimeout === undefined) return undefined;
  return { after, timeout, onTimeout };
}

/** `"canary"`, a wave number, or a non-empty list of them. */
function readPauseAfter(
  value: unknown,
  path: JsonPath,
  problems: Problems,
): readonly PauseAfter[] | undefined {
  if (value === undefined) return undefined;
  const one = (item: unknown, at: JsonPath): PauseAfter | undefined => {
    if (item === "canary") return "canary";
    if (typeof item === "number" && Number.isSafeInteger(item) && item >= 1 && item <= MAX_WAVE) {
      return item;
    }
    return problems.add(
      at,
      `must be "canary" or a wave number from 1 to ${MAX_WAVE} (${got(item)})`,
    );
  };
  if (!Array.isArray(value)) {
    const item = one(value, path);
    return item === undefined ? undefined : [item];
  }
  if (value.length === 0) {
    return problems.add(path, 'must name at least one wave ("canary" or a number)');
  }
  const items = value.map((item, i) => one(item, [...path, i]));
  return items.every((i) => i !== undefined) ? (items as PauseAfter[]) : undefined;
}

/** One pause of a plan: after which wave, for how long, and then what. */
export interface PlannedPause {
  /** The wave it follows (from 1); the next wave waits for the answer. */
  readonly afterWave: number;
  /** That wave's kind: a pause after the canary is the usual one. */
  readonly kind: "canary" | "main";
  readonly timeout: number;
  readonly onTimeout: PauseOutcome;
}

/** A `pauseAfter` entry that makes no pause in this plan, and why. */
export interface UnusedPause {
  readonly after: PauseAfter;
  readonly why: string;
}

/**
 * Where `pause` falls among `waves` (the plan's, in order): a pause after a wave that another
 * wave follows. One after the last wave, or after a canary the plan does not have, is unused
 * and said why; two entries naming one wave make one pause.
 */
export function plannedPauses(
  waves: readonly { readonly wave: number; readonly kind: "canary" | "main" }[],
  pause: PausePolicy | undefined,
): { readonly pauses: PlannedPause[]; readonly unused: UnusedPause[] } {
  const pauses: PlannedPause[] = [];
  const unused: UnusedPause[] = [];
  if (pause === undefined) return { pauses, unused };
  const last = waves.length;
  for (const after of pause.after) {
    const wave = after === "canary" ? waves.filter((w) => w.kind === "canary").at(-1)?.wave : after;
    if (wave === undefined) {
      unused.push({ after, why: "the plan has no canary wave" });
    } else if (wave > last) {
      unused.push({ after, why: `the plan has ${last} wave${last === 1 ? "" : "s"}` });
    } else if (wave === last) {
      unused.push({ after, why: `wave ${wave} is the last: no wave waits for it` });
    } else if (!pauses.some((p) => p.afterWave === wave)) {
      const kind = waves[wave - 1]?.kind ?? "main";
      pauses.push({ afterWave: wave, kind, timeout: pause.timeout, onTimeout: pause.onTimeout });
    }
  }
  pauses.sort((a, b) => a.afterWave - b.afterWave);
  return { pauses, unused };
}
