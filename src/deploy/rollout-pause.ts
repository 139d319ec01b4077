// A rollout's pause, as the deployer lives it: the rollout record says it is paused (written
// before the operator is told), then the deployer reads the pause's answer in the store every
// PAUSE_POLL_MS until an operator's `nixship rollout resume|abort ID` comes, the deadline
// passes (its default outcome is then written as the answer, if nobody's came first), or the
// deploy is interrupted. The answer decides whether the next wave starts.

import { UsageError } from "../errors.js";
import type { PlannedPause } from "../fleet/pause-policy.js";
import type { DeployPlan } from "../fleet/plan.js";
import type { PauseAnswer } from "../status/pause-answer.js";
import { readAnswer, writeAnswer } from "../status/pause-answer-store.js";
import { PAUSE_POLL_MS } from "../status/rollout.js";
import { ensureConditionalWrites } from "../store/conditional-writes.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { interruptReason } from "../util/interrupt-reason.js";
import { flagWord } from "../util/shell-quote.js";
import { testWait } from "../util/test-waits.js";
import { shownUrl } from "../util/url-credentials.js";
import type { DeployOptions } from "./deploy-options.js";
import type { DeployEvent } from "./events.js";
import type { PauseVerdict } from "./run-rollout.js";

export interface PauseGateInput {
  /** The fleet's cache store, where the rollout record and the answers live. */
  readonly store: ObjectStore;
  /** The rollout's id. */
  readonly rollout: string;
  /** The fleet as the deploy's --fleet named it, for the commands that answer the pause. */
  readonly fleetArg?: string | undefined;
  /** Who runs the deploy (deploy-origin.ts): the deadline and an interrupt answer in its name. */
  readonly by: string;
  /** Follows the event in the rollout record, and resolves once that is written. */
  readonly record: (event: DeployEvent) => Promise<void>;
  /** Shows the event (the terminal, --json). */
  readonly show: (event: DeployEvent) => void;
  readonly signal?: AbortSignal | undefined;
  readonly pollMs?: number;
  readonly now?: () => Date;
}

/** The commands that answer a pause of `rollout` (`fleetArg`: the fleet as --fleet names it). */
export function answerCommands(
  rollout: string,
  fleetArg?: string,
): { resume: string; abort: string } {
  const fleet = flagWord("fleet", fleetArg);
  return {
    resume: `nixship rollout resume ${rollout}${fleet}`,
    abort: `nixship rollout abort ${rollout}${fleet}`,
  };
}

/**
 * The store a rollout's pauses are answered in (the fleet's cache store), opened before any host
 * changes, when the plan pauses: it must honour conditional writes, or an operator's answer and
 * the deadline's could both count. Undefined when the plan does not pause.
 */
export async function openAnswers(
  cacheUrl: string | undefined,
  plan: Pick<DeployPlan, "pauses">,
): Promise<ObjectStore | undefined> {
  if ((plan.pauses ?? []).length === 0) return undefined;
  if (cacheUrl === undefined) {
    throw new UsageError(
      "deploy: the rollout pauses, and the fleet has no cache store to pause in",
    );
  }
  const store = await openStore(cacheUrl);
  try {
    await ensureConditionalWrites(store);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/**
 * The rollout engine's wait at each pause (run-rollout.ts): resume goes on; abort, or the
 * interrupt, stops it. `aborted()`: the answer that aborted the rollout, once one did.
 */
export function pauseGate(input: PauseGateInput): {
  readonly wait: (pause: PlannedPause) => Promise<PauseVerdict>;
  readonly aborted: () => PauseAnswer | undefined;
} {
  let aborted: PauseAnswer | undefined;
  return {
    aborted: () => aborted,
    wait: async (pause) => {
      const answer = await waitAtPause(input, pause);
      switch (answer.action) {
        case "resume":
          return { go: true };
        case "abort":
          aborted = answer;
          return { go: false, reason: abortReason(answer) };
        case "interrupted":
          return {
            go: false,
            reason: `${input.signal === undefined ? "interrupted" : interruptReason(input.signal)} while paused after wave ${pause.afterWave}`,
          };
      }
    },
  };
}

/** Why an aborted rollout stopped: who aborted it, when, or that its deadline did. */
export function abortReason(answer: PauseAnswer): string {
  return answer.timedOut === true
    ? `aborted: nobody answered the pause after wave ${answer.afterWave} by ${answer.at}, and abort is its default (onPauseTimeout)`
    : `aborted by ${answer.by} at ${answer.at} ('nixship rollout abort'), while paused after wave ${answer.afterWave}`;
}

/** Waits at `pause` until it is answered, and says how it ended (record, then the screen). */
export async function waitAtPause(
  input: PauseGateInput,
  pause: PlannedPause,
): Promise<PauseAnswer> {
  const now = input.now ?? (() => new Date());
  const since = now();
  const until = new Date(since.getTime() + pause.timeout * 1000);
  const paused: DeployEvent = {
    type: "paused",
    rollout: input.rollout,
    afterWave: pause.afterWave,
    kind: pause.kind,
    since: since.toISOString(),
    until: until.toISOString(),
    onTimeout: pause.onTimeout,
    ...answerCommands(input.rollout, input.fleetArg),
    store: shownUrl(input.store.url),
  };
  await input.record(paused);
  input.show(paused);
  const answer = await awaitAnswer(input, pause, until, now);
  const ended: DeployEvent = {
    type: "pause-ended",
    rollout: input.rollout,
    afterWave: pause.afterWave,
    action: answer.action,
    by: answer.by,
    at: answer.at,
    ...(answer.timedOut === true ? { timedOut: true } : {}),
  };
  await input.record(ended);
  input.show(ended);
  return answer;
}

async function awaitAnswer(
  input: PauseGateInput,
  pause: PlannedPause,
  until: Date,
  now: () => Date,
): Promise<PauseAnswer> {
  const { store, rollout, signal } = input;
  const own = (action: PauseAnswer["action"], timedOut: boolean): PauseAnswer => ({
    rollout,
    afterWave: pause.afterWave,
    action,
    by: input.by,
    at: now().toISOString(),
    ...(timedOut ? { timedOut: true } : {}),
  });
  const poll = input.pollMs ?? testWait("NIXSHIP_PAUSE_POLL_MS", PAUSE_POLL_MS, PAUSE_POLL_MS);
  for (;;) {
    if (signal?.aborted) {
      // Written so that a later answer is told the pause is over; the deploy stops either way.
      const interrupted = own("interrupted", false);
      await writeAnswer(store, interrupted).catch(() => undefined);
      return interrupted;
    }
    // A store that fails, or an object there that is no answer, answers nothing: the deadline
    // still does.
    const found = await readAnswer(store, rollout, pause.afterWave).catch(() => undefined);
    if (found !== undefined) return found;
    const left = until.getTime() - now().getTime();
    if (left <= 0) {
      const fallback = own(pause.onTimeout, true);
      const written = await writeAnswer(store, fallback).catch(() => undefined);
      // An operator's answer that came first counts, whatever the deadline says.
      return written?.status === "answered" && written.answer.action !== "interrupted"
        ? written.answer
        : fallback;
    }
    await sleep(Math.min(poll, left), signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A deploy whose policy pauses needs the fleet's cache store: the rollout record and the
 * answers live there. Refused before anything is built (a rollback and `--async` never pause).
 */
export function refusePausesWithoutStore(
  options: Pick<DeployOptions, "fleet" | "policy" | "rollback" | "async">,
): void {
  if (options.policy.pause === undefined || options.rollback !== undefined) return;
  if (options.async === true || options.fleet.cache !== undefined) return;
  throw new UsageError(
    "deploy: the policy pauses the rollout (pauseAfter), and a pause lives in the fleet's cache store (its rollout record, and the answer 'nixship rollout resume|abort' writes there), but the fleet has no cache",
    "give the fleet a cache (cache.url), or leave out policy.pauseAfter",
  );
}
