// Answers to rollout pauses in an ObjectStore (pause-answer.ts): written once, if absent, and
// read back by the deployer that waits and by the command that answered.
import { OperationError } from "../errors.js";
import { readAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import {
  ANSWER_LIMIT,
  answerKey,
  formatAnswer,
  type PauseAnswer,
  parseAnswer,
} from "./pause-answer.js";
import type { RolloutRecord } from "./rollout.js";

/**
 * Writes `answer` unless the pause has one: "written", or the answer that was there first
 * (that one counts).
 */
export async function writeAnswer(
  store: ObjectStore,
  answer: PauseAnswer,
): Promise<
  { readonly status: "written" } | { readonly status: "answered"; readonly answer: PauseAnswer }
> {
  const key = answerKey(answer.rollout, answer.afterWave);
  // An answer written and gone again (removed by hand) lets the write be tried again, twice.
  for (let attempt = 0; attempt < 3; attempt++) {
    const put = await store.put(key, formatAnswer(answer), {
      contentType: "application/json",
      condition: { ifAbsent: true },
    });
    if (put.status === "written") return { status: "written" };
    const first = await readAnswer(store, answer.rollout, answer.afterWave);
    if (first !== undefined) return { status: "answered", answer: first };
  }
  throw new OperationError(
    "pause-answer-vanishing",
    `${store.url} ${key}: the store refuses to write the answer as if one were there, yet none can be read`,
  );
}

/** The pause's answer, or undefined while it has none; a malformed one is an InputError. */
export async function readAnswer(
  store: ObjectStore,
  rollout: string,
  afterWave: number,
): Promise<PauseAnswer | undefined> {
  const key = answerKey(rollout, afterWave);
  const bytes = await readAll(store, key, ANSWER_LIMIT);
  return bytes === undefined
    ? undefined
    : parseAnswer(bytes, { rollout, afterWave }, `${store.url} ${key}`);
}

/**
 * The answer written to the pause `record` waits at, when it says paused and its record has not
 * taken one (rolloutGone judges by it); undefined otherwise, or when none can be read.
 */
export async function untakenAnswer(
  store: ObjectStore,
  record: RolloutRecord,
): Promise<PauseAnswer | undefined> {
  const pause = record.state === "paused" ? record.pauses?.at(-1) : undefined;
  if (pause === undefined || pause.answer !== undefined) return undefined;
  return await readAnswer(store, record.id, pause.afterWave).catch(() => undefined);
}
