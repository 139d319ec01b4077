// A host's state in one word, the same in every view: `status`'s STATE column and its --json,
// the dashboard's table, filter and host page, and `/metrics`. One order of precedence for a
// row asked live and a row read from the store. Pure.
import { failedOnIt } from "../status/failed-on-it.js";
import { bootsNextOf, failedInRollout, midDeploy, type StatusRow } from "./status-rows.js";

/** Every state a host can be in, in the order the dashboard sums them up. */
export const HOST_STATES = [
  "in-step",
  "drifting",
  "failed",
  "rolled-back",
  "rejected",
  "applying",
  "unconfirmed",
  "unbaked",
  "offline",
  "paused",
  "behind",
  "unreported",
  "unreachable",
  "unreadable",
] as const;
export type HostState = (typeof HOST_STATES)[number];

/**
 * The host's state. Drift comes first: the host runs what nixship did not leave there. Then a
 * system that failed there, then a rollout that did not give the host its system (skipped,
 * never reached; one it failed in is told as failed or rolled back), then what its last
 * deploy or release did, then its agent's liveness and channel.
 */
export function hostState(row: StatusRow): HostState {
  if (row.source === "live" && !row.reachable) {
    return row.answerUnreadable ? "unreadable" : "unreachable";
  }
  if (row.source === "stored" && row.unreadable !== undefined) return "unreadable";
  if (row.drift !== undefined) return "drifting";
  // It runs a system that failed there, and could not go back: the host's word, or its record's
  // (liveRow puts the record's in `failed`), before any rollout's ask, in either kind of row.
  if (row.source === "live" && row.failed !== undefined) return "failed";
  if (row.source === "stored" && row.failureUndone === undefined && failedOnIt(row, row.current)) {
    return "failed";
  }
  // An activation is under way, or awaits its deploy's confirmation (the deploy is in its checks).
  if (row.source === "live" && midDeploy(row)) return "applying";
  // The fleet's last rollout to name it did not give it its system, and nothing since did;
  // for an agent host whose agent is offline or paused, that is why, and the word.
  if (row.behindRollout !== undefined && !failedInRollout(row)) {
    if (row.source === "stored" && (row.liveness === "offline" || row.liveness === "paused")) {
      return row.liveness;
    }
    return "behind";
  }
  // An agent host that failed in the rollout and went back: its record confirms only what it
  // went back to, the rollout tells the failure (status/behind.ts).
  if (row.behindRollout?.rolledBack === true) return "rolled-back";
  if (row.source === "live") {
    // Its last deploy failed, and it runs another system than that deploy asked for.
    if (row.behind === true && row.last?.state === "failed") {
      return row.last.rolledBack === true ? "rolled-back" : "failed";
    }
    if (row.behind === true) return "behind";
    // It lacks the secrets its last deploy gave it.
    if (row.secretsAway === true) return "behind";
    // A reboot into a new system that no deploy or rollback judged (docs/reboots.md).
    if (row.boot?.pending) return "unconfirmed";
    // Its rollout's bake of the system it runs never ended (docs/progressive-delivery.md).
    if (row.unbaked !== undefined) return "unbaked";
    return "in-step";
  }
  // A host's first deploy: no record yet, but the running rollout applies it (rollout-applying).
  if (!row.reported) return row.state === "applying" ? "applying" : "unreported";
  // Its last deploy failed, and it went back to the system it ran before (in a rollout not
  // undone since: then what it ran before is what the fleet asks).
  if (row.state === "failed" && row.failureUndone === undefined) {
    return row.rolledBack === true ? "rolled-back" : "failed";
  }
  if (row.state === "rejected") return "rejected";
  if (row.liveness === "offline") return "offline";
  if (row.liveness === "paused") return "paused";
  if (row.behind === true) return "behind";
  if (row.state === "applying") return "applying";
  // A boot deploy's success: it boots a system no check has seen (docs/reboots.md).
  if (bootsNextOf(row) !== undefined) return "unconfirmed";
  if (row.unbaked !== undefined) return "unbaked";
  return row.inStep ? "in-step" : "behind";
}

/** The rows as `status --json` and the dashboard's `/api/hosts` give them: each with its state. */
export function withHostStates(
  rows: readonly StatusRow[],
): (StatusRow & { readonly hostState: HostState })[] {
  return rows.map((row) => ({ ...row, hostState: hostState(row) }));
}
