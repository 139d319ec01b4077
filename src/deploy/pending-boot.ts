// A boot left pending on a host (a deploy with a reboot that ended before its verdict), read
// from the host's status for the planner, and what the deploy asks of a host whose pending
// boot it judges (docs/reboots.md).
import type { PendingBootState, PlannedHost } from "../fleet/plan.js";
import type { HostStatus } from "../host/script-outcomes.js";
import type { JudgeBootRequest, RebootRequest } from "../host/session-request.js";
import { isStorePath, type StorePath } from "../nix/store-path.js";

/** The host's pending boot, if its status reports one. */
export function pendingBootOf(status: HostStatus): PendingBootState | undefined {
  if (!status.reachable) return undefined;
  const pending = status.boot?.pending;
  if (pending === undefined || pending === null) return undefined;
  const path = storePathOrNull(pending.path);
  return {
    token: pending.token,
    path,
    since: pending.since,
    generation: pending.generation ?? undefined,
    previous: storePathOrNull(pending.previous ?? null) ?? undefined,
    booted: path !== null && status.booted === path,
  };
}

/** What a host whose pending boot the deploy judges is asked; undefined for any other host. */
export function judgeBootRequest(
  planned: PlannedHost,
  reboot: RebootRequest,
): JudgeBootRequest | undefined {
  const pending = planned.pendingBoot;
  if (pending?.decision !== "judge") return undefined;
  return {
    token: pending.token,
    generation: pending.generation,
    previous: pending.previous,
    reboot,
  };
}

function storePathOrNull(text: string | null): StorePath | null {
  return text !== null && isStorePath(text) ? text : null;
}
