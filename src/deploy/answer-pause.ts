// `nixship rollout resume|abort ID`, from any machine that reaches the fleet's store: finds the
// rollout's record, checks that it is paused, writes the answer (the first one counts), and
// waits a bounded time for the paused deployer to take it (its record then says so).
import { InterruptedError, OperationError, UsageError } from "../errors.js";
import type { PauseAnswer } from "../status/pause-answer.js";
import { writeAnswer } from "../status/pause-answer-store.js";
import {
  answerUntaken,
  PAUSE_POLL_MS,
  type RolloutPause,
  type RolloutRecord,
  rolloutGone,
} from "../status/rollout.js";
import { findRolloutKey, readRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";

/** How long the command waits for the deployer to take its answer: several of its reads. */
export const TAKE_WAIT_MS = 15 * PAUSE_POLL_MS;
/** How often the command reads the record while it waits. */
const READ_EVERY_MS = 500;

export interface AnswerOutcome {
  readonly answer: PauseAnswer;
  /** Whether the deployer took it within the wait (its record says so). */
  readonly taken: boolean;
  /** The record as last read. */
  readonly record: RolloutRecord;
}

export async function answerPause(
  store: ObjectStore,
  request: {
    readonly rollout: string;
    readonly action: "resume" | "abort";
    readonly by: string;
    readonly now?: () => Date;
    readonly waitMs?: number;
    /** Stops the wait for the deploy to take the answer (the answer, once written, stands). */
    readonly signal?: AbortSignal;
  },
): Promise<AnswerOutcome> {
  const now = request.now ?? (() => new Date());
  const command = `rollout ${request.action}`;
  const key = await findRolloutKey(store, request.rollout);
  const record = key === undefined ? undefined : await readRollout(store, key);
  if (key === undefined || record === undefined) {
    throw new UsageError(
      `${command}: no rollout ${request.rollout} in ${store.url} (status/rollouts/)`,
      "the paused deploy names its rollout's id ('nixship rollout resume ID'), as do 'nixship status' and the dashboard; check --fleet or --store names its store",
    );
  }
  const pause = waitingPause(record);
  if (pause === undefined) throw notPaused(command, record);
  const gone = rolloutGone(record, now());
  if (gone !== undefined) {
    throw new OperationError(
      "rollout-gone",
      `${command}: rollout ${record.id} still says it is paused after wave ${pause.afterWave}, but ${gone}: the deploy is gone and nothing waits for an answer`,
      {
        hint: `'nixship rollback --rollout ${record.id}' puts back what the hosts it changed ran before`,
      },
    );
  }
  const answer: PauseAnswer = {
    rollout: record.id,
    afterWave: pause.afterWave,
    action: request.action,
    by: request.by,
    at: now().toISOString(),
  };
  if (request.signal?.aborted) {
    throw new InterruptedError(
      `${command}: ${String(request.signal.reason)}; no answer was written`,
    );
  }
  const written = await writeAnswer(store, answer);
  if (written.status === "answered") {
    const first = written.answer;
    const untaken = answerUntaken(pause, first, now());
    if (untaken !== undefined) {
      throw new OperationError(
        "rollout-gone",
        `${command}: rollout ${record.id} still says it is paused after wave ${pause.afterWave}, but ${untaken}: the deploy is gone and nothing waits for an answer`,
        {
          hint: `'nixship rollback --rollout ${record.id}' puts back what the hosts it changed ran before`,
        },
      );
    }
    throw new OperationError(
      "pause-answered",
      `${command}: the pause of rollout ${record.id} after wave ${pause.afterWave} was answered already: ${answerText(first)}`,
      { hint: "the first answer counts" },
    );
  }
  const waited = await awaitTaken(
    store,
    key,
    pause,
    request.waitMs ?? TAKE_WAIT_MS,
    request.signal,
  );
  return { answer, taken: waited.taken, record: waited.record ?? record };
}

/** The record's pause that waits for an answer, while the record says it is paused. */
export function waitingPause(record: RolloutRecord): RolloutPause | undefined {
  if (record.state !== "paused") return undefined;
  const last = record.pauses?.at(-1);
  return last === undefined || last.answer !== undefined ? undefined : last;
}

/** An answer as a line: `resume by root@ops at 2024-…` (or the deadline's default). */
export function answerText(answer: Pick<PauseAnswer, "action" | "by" | "at" | "timedOut">): string {
  const what = answer.action === "interrupted" ? "the deploy was interrupted" : answer.action;
  return answer.timedOut === true
    ? `${what}, by its deadline (${answer.at}): nobody answered`
    : `${what} by ${answer.by} at ${answer.at}`;
}

/** Another operator's answer or the rollout's end got there first: an outcome, not a misuse. */
function notPaused(command: string, record: RolloutRecord): OperationError {
  const id = record.id;
  const last = record.pauses?.at(-1);
  const ended =
    last?.answer === undefined
      ? ""
      : `; its pause after wave ${last.afterWave} ended: ${answerText(last.answer)}`;
  const hint =
    record.state === "running"
      ? "it waits for an answer only once its deploy says it is paused (policy.pauseAfter)"
      : record.state === "interrupted" || record.state === "aborted"
        ? `'nixship rollback --rollout ${id}' puts back what the hosts it changed ran before`
        : record.state === "paused"
          ? "its pause was answered: the first answer counts"
          : "a rollout that ended waits for nothing";
  return new OperationError(
    "rollout-not-paused",
    `${command}: rollout ${id} is not paused: it is ${record.state}${ended}`,
    { hint },
  );
}

/** Reads the record until it says the pause was answered, for at most `waitMs`. */
async function awaitTaken(
  store: ObjectStore,
  key: string,
  pause: RolloutPause,
  waitMs: number,
  signal: AbortSignal | undefined,
): Promise<{ readonly taken: boolean; readonly record: RolloutRecord | undefined }> {
  const deadline = performance.now() + waitMs;
  let record: RolloutRecord | undefined;
  for (;;) {
    if (signal?.aborted) return { taken: false, record };
    record = (await readRollout(store, key).catch(() => undefined)) ?? record;
    const mine = record?.pauses?.find(
      (p) => p.afterWave === pause.afterWave && p.since === pause.since,
    );
    if (mine?.answer !== undefined) return { taken: true, record };
    const left = deadline - performance.now();
    if (left <= 0) return { taken: false, record };
    await new Promise((resolve) => setTimeout(resolve, Math.min(READ_EVERY_MS, left)));
  }
}
