// A boot left pending on a host (a deploy with a reboot that ended before its verdict, or one
// that set the boot for later: --action boot), read from the host's status for the planner,
// what the deploy asks of a host whose pending boot it judges, and the line that says first
// what becomes of it (docs/reboots.md).
import type { Action } from "../fleet/action.js";
import type { HostPlan, PendingBootState, PlannedHost } from "../fleet/plan.js";
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
    // The boot it was recorded in against this one (older scripts record none).
    ...(typeof pending.bootId === "string" && status.boot !== undefined
      ? { rebooted: pending.bootId !== status.boot.id }
      : {}),
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

/**
 * What the deploy does with the host's pending boot, said before anything else happens to the
 * host; undefined for a host with none.
 */
export function pendingBootLine(
  host: Pick<HostPlan, "current" | "desired" | "pendingBoot">,
  action: Action,
): string | undefined {
  const pending = host.pendingBoot;
  if (pending === undefined) return undefined;
  const into = `generation ${pending.generation ?? "?"} (${pending.path ?? "a system it did not name"})`;
  const runs = host.current ?? "a system it did not name";
  const replaced = "this activation replaces it";
  switch (pending.reason) {
    case undefined:
      return `judging first the boot into ${into} that an earlier deploy left pending: the host booted it`;
    case "not-rebooted":
      return `the boot into ${into} that an earlier deploy set is pending, but the host has not rebooted since: it runs ${runs}; ${replaced}`;
    case "booted-other":
      return `the boot into ${into} that an earlier deploy left pending did not happen: the host rebooted into ${runs}; ${replaced}`;
    case "not-booted":
      return `the boot into ${into} that an earlier deploy left pending did not happen: the host runs ${runs}; ${replaced}`;
    case "other-system":
      return `the host booted ${into}, left pending by an earlier deploy, but is to run ${host.desired}; ${replaced}`;
    case "not-running":
      return `the host booted ${into}, left pending by an earlier deploy, but runs ${runs} now; ${replaced}`;
    case "action":
      return `the boot into ${into} that an earlier deploy left pending is judged by a switch, not by --action ${action}; ${replaced}`;
  }
}

function storePathOrNull(text: string | null): StorePath | null {
  return text !== null && isStorePath(text) ? text : null;
}
