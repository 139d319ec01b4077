// Whether a host is behind what the fleet last asked of it (status/fleet-asks.ts): the newest
// rollout that named it gave it a system it does not run, and no record of the host since says
// otherwise. Pure; every view (status, the dashboard, plan) shows the same judgement.

import { storeName } from "../nix/store-path.js";
import type { Ask } from "./fleet-asks.js";
import type { StatusRecord } from "./status.js";

/** A host behind the fleet's last ask: what it was to run, which rollout asked, and why not. */
export interface Behind {
  /** The system the rollout named for it. */
  readonly wants: string;
  /** The rollout's id, and when it started. */
  readonly rollout: string;
  readonly at: string;
  /** What came of it there, said for a person: "unreachable: …", "not started: …", … */
  readonly why: string;
}

/**
 * `running`: what the host runs (its live answer, or its record's word; null or undefined: not
 * known). A record the host's deploy or agent wrote since the rollout started is the newer word
 * (a failure it records is judged by the record's own `desired`), so the ask judges only hosts
 * the rollout wrote nothing for.
 */
export function behindOf(
  ask: Ask | undefined,
  record: Pick<StatusRecord, "startedAt"> | undefined,
  running: string | null | undefined,
): Behind | undefined {
  if (ask === undefined) return undefined;
  if (record !== undefined && Date.parse(record.startedAt) >= Date.parse(ask.rollout.startedAt)) {
    return undefined;
  }
  if (running === ask.system) return undefined;
  return {
    wants: ask.system,
    rollout: ask.rollout.id,
    at: ask.rollout.startedAt,
    why: whyBehind(ask, running),
  };
}

function whyBehind(ask: Ask, running: string | null | undefined): string {
  const { entry } = ask;
  const said = entry.message === null ? "" : `: ${entry.message}`;
  switch (entry.state) {
    case "unreachable":
      return `skipped as unreachable${said}`;
    case "not-started":
      return `not started${said}`;
    case "failed":
    case "rolled-back":
      return `${entry.state}${said}`;
    case "pending":
    case "activating":
    case "health":
      return "the rollout has not reached it yet";
    default:
      return running === null || running === undefined
        ? "what it runs is not known"
        : `it runs ${storeName(running)} since`;
  }
}

/** One line for a person: "behind rollout ID (why): wants NAME". */
export function behindText(behind: Behind): string {
  return `behind rollout ${behind.rollout} (${behind.why}): should run ${storeName(behind.wants)}`;
}
