// What a host runs once its deploy result is in, as far as the deployer knows: one reading for
// the status record (push-records.ts) and the summary's "runs" column, so that they agree.
import { type Action, actionActivatesNow } from "../fleet/action.js";
import type { HostPhase } from "../fleet/phase.js";
import type { HostResult } from "./events.js";

/** Phases a failed host had not yet changed anything in: it runs what it ran before. */
const UNCHANGED_IN: ReadonlySet<HostPhase> = new Set([
  "connect",
  "waiting",
  "copy",
  "realise",
  "secrets",
]);

/**
 * The system `result`'s host runs now: the new one once activated (a boot activation: the old
 * one until it reboots); after a failure, the one it ran (`before`) when it went back or had
 * changed nothing yet, else the failed system, which the host marks failed; a skipped host what
 * it ran; a host that said what it runs after a failure (a boot judged and undone), that. Undefined:
 * the deployer does not know (a host refused as changed since).
 */
export function runsAfter(
  result: Pick<HostResult, "outcome" | "desired">,
  before: string | undefined,
  action: Action,
): string | undefined {
  const o = result.outcome;
  switch (o.status) {
    case "activated":
      return actionActivatesNow(action) ? result.desired : before;
    case "failed":
      // Left settling: it ends where its activation ends, which the deployer did not see.
      if (o.settling === true) return undefined;
      // The host's own word first (a boot judged and undone: what it booted back into).
      if ("runs" in o && o.runs !== undefined) return o.runs;
      return o.rolledBack || UNCHANGED_IN.has(o.phase) ? before : result.desired;
    case "skipped":
      // It runs what changed it since: as it said, when it said.
      if (o.reason === "refused") return o.runs;
      return o.reason === "up-to-date" ? (before ?? result.desired) : before;
  }
}

/**
 * The generation `result`'s host is on once its result is in: the new one once it runs the
 * new system; the one it was surveyed on (`before`) while it still runs that system (gone back,
 * untouched, a boot deploy's host until it reboots); else not known (null).
 */
export function generationAfter(
  result: Pick<HostResult, "outcome" | "desired">,
  before:
    | { readonly current?: string | undefined; readonly generation?: number | undefined }
    | undefined,
  action: Action,
): number | null {
  const runs = runsAfter(result, before?.current, action);
  const o = result.outcome;
  if (o.status === "activated" && runs === result.desired) return o.generation ?? null;
  return runs !== undefined && runs === before?.current ? (before.generation ?? null) : null;
}
