// What a paused rollout says on the terminal and in a CI log: that it waits, for whom (the
// commands that answer it), until when and what then; and how the pause ended.

import { answerText } from "../deploy/answer-pause.js";
import type { DeployEvent } from "../deploy/events.js";
import { answerCommands } from "../deploy/rollout-pause.js";
import { ANSWER_TAKEN_WITHIN_MS } from "../status/rollout.js";
import type { PausedRollout } from "../views/rollout-watch.js";

export function pauseLine(
  event: Extract<DeployEvent, { type: "paused" } | { type: "pause-ended" }>,
): string {
  if (event.type === "paused") {
    const then = event.onTimeout === "abort" ? "abort (roll back)" : "resume";
    return [
      `paused after wave ${event.afterWave}${event.kind === "canary" ? " (the canary)" : ""}: rollout ${event.rollout} waits for an operator until ${event.until}, then ${then}`,
      `  to go on:                    ${event.resume}`,
      `  to stop and roll back:       ${event.abort}`,
      `  (from any machine with the fleet, or with --store ${event.store})`,
    ].join("\n");
  }
  const after = `after wave ${event.afterWave}`;
  switch (event.action) {
    case "resume":
      return event.timedOut === true
        ? `nobody answered the pause ${after} by ${event.at}: resuming, its default`
        : `resumed ${after} by ${event.by} at ${event.at}`;
    case "abort":
      return event.timedOut === true
        ? `nobody answered the pause ${after} by ${event.at}: aborting, its default`
        : `aborted ${after} by ${event.by} at ${event.at}`;
    case "interrupted":
      return `interrupted while paused ${after}: no later wave starts; the rollout record says so`;
  }
}

/**
 * A paused rollout as `status` shows it: since when, until when, and the commands (one whose
 * deployer is gone is no paused rollout: pausedRollout).
 */
export function pausedRolloutLine(paused: PausedRollout, fleetArg?: string): string {
  const { id, pause } = paused;
  const { resume, abort } = answerCommands(id, fleetArg);
  const by = paused.by === undefined ? "" : `, started by ${paused.by}`;
  const head = `rollout ${id} is paused after wave ${pause.afterWave} since ${pause.since}${by}`;
  if (paused.answer !== undefined) {
    return `${head}: its pause was answered (${answerText(paused.answer)}), and its deploy has not taken the answer yet (a deploy that is there takes it within seconds; one that has not within ${ANSWER_TAKEN_WITHIN_MS / 1000} s is gone, and 'nixship rollback --rollout ${id}' then puts back what it changed)`;
  }
  const then = pause.onTimeout === "abort" ? "abort (roll back)" : "resume";
  return `${head}: '${resume}' lets it go on, '${abort}' stops it and rolls back the hosts it changed (at ${pause.until} it will ${then} by itself)`;
}
