// The answer to a rollout's pause, as one object in the store beside the rollout records: the
// first writer wins (a conditional put, if absent), so an operator's resume, another's abort
// and the pause's own deadline cannot both count. Pure: its key, shape and strict parsing.
//
//   status/rollouts/answers/<rollout id>/<wave>.json
//
// It lies under status/rollouts/, so whoever may write rollout records (a deployer's
// credentials, the cache module's writer policy) may answer, and nobody else: the store's own
// access control is what authenticates it, as it does the rollout records the deployer writes.
// "answers/" sorts after the records' digits, so finding the newest record still costs one LIST
// of one key.
import { InputError } from "../errors.js";
import { withoutControls } from "../util/text.js";
import { recordObject } from "./record-json.js";
import {
  PAUSE_ANSWER_ACTIONS,
  type PauseAnswerAction,
  ROLLOUT_ID,
  ROLLOUT_PREFIX,
  type RolloutPauseAnswer,
} from "./rollout.js";

export const ANSWER_PREFIX = `${ROLLOUT_PREFIX}answers/`;
/** An answer is a few hundred bytes; anything larger is not one. */
export const ANSWER_LIMIT = 4096;

/** The answer to the pause of rollout `rollout` after wave `afterWave`. */
export interface PauseAnswer extends RolloutPauseAnswer {
  readonly rollout: string;
  readonly afterWave: number;
}

export function answerKey(rollout: string, afterWave: number): string {
  if (!ROLLOUT_ID.test(rollout)) {
    throw new Error(`answerKey: bad rollout id ${JSON.stringify(rollout)}`);
  }
  if (!Number.isSafeInteger(afterWave) || afterWave < 1) {
    throw new Error(`answerKey: bad wave ${afterWave}`);
  }
  return `${ANSWER_PREFIX}${rollout}/${afterWave}.json`;
}

export function formatAnswer(answer: PauseAnswer): Uint8Array {
  return Buffer.from(
    `${JSON.stringify({
      version: 1,
      rollout: answer.rollout,
      afterWave: answer.afterWave,
      action: answer.action,
      by: answer.by,
      at: answer.at,
      ...(answer.timedOut === true ? { timedOut: true } : {}),
    })}\n`,
  );
}

/**
 * An answer read back, strictly: it must be for `rollout`'s pause after `afterWave` (an object
 * copied from another key answers nothing). `source` names it in errors.
 */
export function parseAnswer(
  bytes: Uint8Array,
  expected: { readonly rollout: string; readonly afterWave: number },
  source: string,
): PauseAnswer {
  const a = recordObject(bytes, source, "pause-answer-malformed");
  if (a.version !== 1) throw malformed(source, "unsupported version");
  if (a.rollout !== expected.rollout || a.afterWave !== expected.afterWave) {
    throw malformed(
      source,
      `it answers ${JSON.stringify(a.rollout)} after wave ${JSON.stringify(a.afterWave)}, not rollout ${expected.rollout} after wave ${expected.afterWave}`,
    );
  }
  if (!(PAUSE_ANSWER_ACTIONS as readonly unknown[]).includes(a.action)) {
    throw malformed(source, `"action" must be one of ${PAUSE_ANSWER_ACTIONS.join(", ")}`);
  }
  if (typeof a.by !== "string" || a.by === "") throw malformed(source, `"by" must be a string`);
  if (typeof a.at !== "string" || a.at.length > 40 || Number.isNaN(Date.parse(a.at))) {
    throw malformed(source, `"at" is not a date`);
  }
  if (!(a.timedOut === undefined || a.timedOut === true)) {
    throw malformed(source, `"timedOut" must be true when set`);
  }
  return {
    rollout: expected.rollout,
    afterWave: expected.afterWave,
    action: a.action as PauseAnswerAction,
    by: withoutControls(a.by).slice(0, 300),
    at: a.at,
    ...(a.timedOut === true ? { timedOut: true } : {}),
  };
}

function malformed(source: string, what: string): InputError {
  return new InputError("pause-answer-malformed", `${source}: ${what}`);
}
