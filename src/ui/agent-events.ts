// The pull agent's events as the lines `nixship agent` prints on stderr (--json prints the
// events themselves). undefined: an event with no line of its own.
import type { AgentEvent } from "../agent/agent.js";

export function formatAgentEvent(e: AgentEvent): string | undefined {
  switch (e.type) {
    case "started":
      return `${e.host} following channel ${e.channel}`;
    case "recovering":
      return `an activation of release ${e.seq} was interrupted; applying it again`;
    case "paused":
      return "paused; skipping this poll";
    case "release":
      return `release ${e.seq} (${e.kind})`;
    case "rejected":
      return `refused: ${e.message}`;
    case "no-entry":
      return `release ${e.seq} has no entry for this host`;
    case "applying":
      return `applying release ${e.seq}: ${e.path}`;
    case "log":
      return `  ${e.line}`;
    case "applied":
      return `release ${e.seq} applied (generation ${e.generation ?? "?"})`;
    case "failed":
      return `release ${e.seq} failed: ${e.message}${e.rolledBack ? " (rolled back)" : ""}; not retried until a newer release`;
    case "busy":
      return `the host is busy: ${e.message}; trying again every poll until it is not (said once)`;
    case "interrupted":
      return `release ${e.seq} was interrupted on this host as the agent stops: ${e.message}; applied again when the agent starts`;
    case "rebooting":
      return `release ${e.seq}: the host reboots into ${e.path}; judged after the boot`;
    case "rebooted":
      return `release ${e.seq}: back from the reboot, booted ${e.booted ?? "no system"}; judging the boot`;
    case "warning":
      return `warning: ${e.message}`;
    case "trust-changed":
      return `the config's keys changed: releases signed by ${keyList(e.releaseKeys)} are followed, and substitutes signed by ${keyList(e.cacheKeys)} taken, from this poll on`;
    case "store-error":
      return `store error: ${e.message}${e.retryIn === undefined ? "" : `; retrying in ${Math.round(e.retryIn)}s`}`;
  }
}

function keyList(names: readonly string[]): string {
  return names.length === 0 ? "no key" : names.map((n) => `'${n}'`).join(", ");
}
