// Where this host stands on its channel, judged from a poll's outcome and the agent's state
// (pure): what `nixship agent --once` exits with and says, and how a refusal reads in `agent
// status`; and the --once poll itself.
import type { Agent, PollOutcome } from "./agent.js";
import type { AgentState, RebootingBack, RefusedDocument } from "./state.js";

/** `agent --once`'s exit: 0 only when the host is done with the channel's current release. */
export interface OnceExit {
  readonly code: 0 | 1;
  /** Why, where the poll's own events do not say it. */
  readonly why?: string;
}

const NOTHING_NEW = "nothing new to apply";

/**
 * `agent --once` on a started agent: one poll, and the exit it makes. A channel body that does
 * not parse is read a second time at once (the running agent reads it at its next poll) and
 * refused when it still does not.
 */
export async function pollForExit(
  agent: Pick<Agent, "pollOnce" | "readsAgain" | "state">,
  stopping?: AbortSignal,
): Promise<OnceExit & { readonly outcome: PollOutcome }> {
  let outcome = await agent.pollOnce(stopping);
  if (outcome === "unchanged" && agent.readsAgain) outcome = await agent.pollOnce(stopping);
  return { outcome, ...onceExit(outcome, agent.state) };
}

/**
 * 0 when the host runs the entry of the channel's current release, or that release names none
 * for it, or the channel has none; 1 when it failed or was refused (in this poll, or in an
 * earlier one when the channel did not change since), or is not done (paused, busy, rebooting).
 */
export function onceExit(outcome: PollOutcome, state: AgentState): OnceExit {
  switch (outcome) {
    case "applied":
    case "no-entry":
      return { code: 0 };
    // Their events say why.
    case "failed":
    case "rejected":
      return { code: 1 };
    case "no-release":
      return { code: 0, why: `the channel has no release yet: ${NOTHING_NEW}` };
    case "paused":
      return {
        code: 1,
        why: "not done: the agent is paused ('nixship agent resume' lets it apply releases again)",
      };
    case "busy":
      return { code: 1, why: "not done: another activation holds this host; run again" };
    // Its event says why.
    case "interrupted":
      return { code: 1 };
    case "rebooting":
      return {
        code: 1,
        why:
          state.applying === null && state.rebootingBack
            ? "not done: the host reboots into its previous generation (its boot was undone); run again after the boot"
            : `not done: the host reboots into release ${state.applying?.seq ?? "?"}; run again after the boot to judge it`,
      };
    case "unchanged":
      return standing(state);
  }
}

/** The channel holds what the agent acted on last: how that ended here. */
function standing(state: AgentState): OnceExit {
  if (state.applying !== null) {
    return {
      code: 1,
      why: `not done: release ${state.applying.seq} is being applied (since ${state.applying.startedAt})`,
    };
  }
  if (state.refused) {
    return { code: 1, why: `refused ${refusalText(state.refused)}; ${NOTHING_NEW}` };
  }
  const seq = state.lastSeq;
  if (seq === null || state.lastResult === null) {
    return { code: 1, why: "no release of the channel was applied here yet" };
  }
  switch (state.lastResult) {
    case "success":
      return { code: 0, why: `release ${seq} was applied here already: ${NOTHING_NEW}` };
    case "no-entry":
      return { code: 0, why: `release ${seq} names no entry for this host: ${NOTHING_NEW}` };
    case "failed": {
      // The record of that failure, when it is the agent's last, says when and why.
      const record = state.unreported ?? state.reported;
      const detail =
        record?.seq === seq && record.state === "failed"
          ? ` at ${record.updatedAt}: ${record.error ?? "no reason given"}`
          : "";
      return {
        code: 1,
        why: `release ${seq} failed here${detail}; ${NOTHING_NEW} (a failed release is not tried again)`,
      };
    }
  }
}

/** A refusal as `agent status` and `agent --once` name it: `release 3 at TIME: why`. */
export function refusalText(refused: RefusedDocument): string {
  const what = refused.seq === null ? "the channel's document" : `release ${refused.seq}`;
  return `${what} at ${refused.at}: ${refused.reason}`;
}

/**
 * An awaited reboot back, as `agent status` says it: within its timeout, releases wait for it;
 * past it, the agent's next poll reads the channel again (and warns), which this says.
 */
export function rebootBackText(back: RebootingBack, nowMs: number): string {
  const since = `rebooting back into the previous generation since ${back.since}`;
  return (nowMs - Date.parse(back.since)) / 1000 <= back.timeout
    ? `${since} (releases wait for that boot, ${back.timeout}s at most)`
    : `${since}: overdue (${back.timeout}s passed), the agent reads the channel again at its next poll`;
}
