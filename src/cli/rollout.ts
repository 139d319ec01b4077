// `nixship rollout resume ID` and `nixship rollout abort ID`: the answer to a paused rollout,
// written to the fleet's store from any machine that reaches it.
import { answerPause, answerText } from "../deploy/answer-pause.js";
import { deployedBy } from "../deploy/deploy-origin.js";
import { InterruptedError, UsageError } from "../errors.js";
import { PAUSE_POLL_MS, ROLLOUT_ABANDONED_SECONDS, ROLLOUT_ID } from "../status/rollout.js";
import { openStore } from "../store/url.js";
import { type Command, parseFlags, writeJson } from "./command.js";
import { readFleetInput } from "./fleet-input.js";
import { trapInterrupts } from "./interrupts.js";

const FLAGS = {
  fleet: { type: "string" },
  store: { type: "string" },
  json: { type: "boolean" },
} as const;

const WHO = `Who may answer: whoever may write the fleet's rollout records (status/rollouts/ in its
cache store; on S3, the cache module's writer policy, as deployers have), and nobody else: the
answer is an object under status/rollouts/answers/, so the store's own access control is what
authenticates it, as it does the records. It names who wrote it (user@machine, or the CI run).
The first answer to a pause counts: an answer given after another, or after the pause's
deadline took its default (onPauseTimeout), is refused and says which came first.`;

const OPTIONS = `Options:
  --fleet FILE   the fleet whose cache store holds the rollout (default: $NIXSHIP_FLEET,
                 else ./nixship.json, else the nixship output of the flake here)
  --store URL    the store itself (the fleet's cache.url), without a fleet
  --json         the answer, and whether the deploy took it, as JSON on stdout`;

function answerCommand(action: "resume" | "abort"): Command {
  const doing =
    action === "resume"
      ? `Lets a paused rollout go on: its deploy starts the wave after the pause (the policy's
pauseAfter) within ${PAUSE_POLL_MS / 1000} s, and pauses again at its next pause, if any.`
      : `Stops a paused rollout: no wave after the pause starts, and its deploy rolls back the
hosts the rollout changed so far, each to the system it ran before (as 'nixship rollback
--rollout ID' does, in every mode: ssh, ssm, and a rollback release for agent hosts), then
ends with exit code 1. The rollout record says aborted, by whom and when; the rollback is a
rollout of its own that names the one it undoes.`;
  return {
    path: ["rollout", action],
    summary:
      action === "resume"
        ? "let a paused rollout go on with its next wave"
        : "stop a paused rollout and roll back the hosts it changed",
    help: `Usage: nixship rollout ${action} ID [--fleet FILE | --store URL] [--json]

${doing}

ID is the rollout's id, which the paused deploy prints (and its --json "paused" event), as do
'nixship status' and the dashboard's rollout page. The command checks that the rollout is
paused (a rollout that is not gets an error saying where it is) and that its deploy is still
there (a paused record unwritten for ${ROLLOUT_ABANDONED_SECONDS / 60} minutes, or past its deadline with no outcome
taken, has no deploy to answer: 'nixship rollback --rollout ID' undoes it), writes the answer,
and waits up to ${(15 * PAUSE_POLL_MS) / 1000} s for the deploy to take it (its record then says so).

${WHO}

Exit code 0 when the deploy took the answer; 1 when it did not within the wait (the answer
stays written: a deploy still running takes it at its next read), or when another answer or
the rollout's end got there first: a rollout that is not paused or whose deploy is gone, or
a pause answered already (--json error codes rollout-not-paused, rollout-gone,
pause-answered); 2 for bad usage (no such rollout).

${OPTIONS}`,
    async run(argv, io) {
      const command = `rollout ${action}`;
      const { values, positionals } = parseFlags(argv, FLAGS, command);
      const [id, extra] = positionals;
      if (id === undefined) {
        throw new UsageError(
          `${command}: the rollout's ID is required`,
          `see 'nixship ${command} --help'`,
        );
      }
      if (extra !== undefined) throw new UsageError(`${command}: unexpected argument '${extra}'`);
      if (!ROLLOUT_ID.test(id)) {
        throw new UsageError(
          `${command}: '${id}' is not a rollout's id (8 to 32 lowercase hex digits, as the paused deploy prints it)`,
        );
      }
      if (values.store !== undefined && values.fleet !== undefined) {
        throw new UsageError(`${command}: give --fleet or --store, not both`);
      }
      const url = values.store ?? (await readFleetInput(values, io)).fleet.cache?.url;
      if (url === undefined) {
        throw new UsageError(
          `${command}: rollouts live in the fleet's cache store, and the fleet has no cache`,
          "name the store with --store URL",
        );
      }
      const store = await openStore(url);
      // An interrupt before the answer is written writes none (exit 130); after, it only ends
      // the wait for the deploy to take it, and says so.
      const trap = trapInterrupts({ first: () => {}, second: () => {} });
      try {
        const { answer, taken, record } = await answerPause(store, {
          rollout: id,
          action,
          by: deployedBy(io.env),
          signal: trap.signal,
        });
        if (values.json) {
          writeJson(io, { ...answer, taken, state: record.state });
        } else if (!taken && trap.signal.aborted) {
          io.stderr.write(
            `answered rollout ${id}'s pause after wave ${answer.afterWave} (${answerText(answer)}); ${String(trap.signal.reason)} ended the wait for its deploy to take it, which it does at its next read (every ${PAUSE_POLL_MS / 1000} s): 'nixship status' and the dashboard show where the rollout is\n`,
          );
          return 0;
        } else if (!taken) {
          io.stderr.write(
            `answered rollout ${id}'s pause after wave ${answer.afterWave} (${answerText(answer)}), but its deploy has not taken the answer within ${(15 * PAUSE_POLL_MS) / 1000} s: is it still running? It reads every ${PAUSE_POLL_MS / 1000} s; 'nixship status' and the dashboard show where the rollout is\n`,
          );
        } else {
          io.stdout.write(
            action === "resume"
              ? `rollout ${id} resumed after wave ${answer.afterWave}: its deploy goes on with wave ${answer.afterWave + 1}\n`
              : `rollout ${id} aborted after wave ${answer.afterWave}: its deploy rolls back the hosts it changed; 'nixship status' and the dashboard follow the rollback\n`,
          );
        }
        return taken || trap.signal.aborted ? 0 : 1;
      } catch (err) {
        if (trap.signal.aborted && !(err instanceof InterruptedError)) {
          throw new InterruptedError(
            `${command}: ${String(trap.signal.reason)}; no answer was written`,
            {
              cause: err,
            },
          );
        }
        throw err;
      } finally {
        trap.release();
        await store.close();
      }
    },
  };
}

export const rolloutResumeCommand = answerCommand("resume");
export const rolloutAbortCommand = answerCommand("abort");
