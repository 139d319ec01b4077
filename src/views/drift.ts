// Drift: a host runs a system nixship did not give it (someone ran nixos-rebuild on it). Pure:
// judged from what the host runs against what its status record and its channel say nixship
// left on it; where they say too little to tell, the host is not called drifting.
import { recordSince } from "../status/behind.js";
import type { StatusRecord } from "../status/status.js";

export interface Drift {
  /** What the host runs. */
  readonly running: string;
  /**
   * What nixship left on it, any of which it may run, each once: its record's desired system,
   * the one before it, and the channel's entry for it.
   */
  readonly expected: readonly string[];
}

export interface DriftEvidence {
  /** What the host runs: its live answer, or its record's `current` (null or undefined: unknown). */
  readonly running: string | null | undefined;
  /** The host's latest status record. */
  readonly record: StatusRecord | undefined;
  /** The system the channel's current (verified) release names for the host (agent hosts). */
  readonly channelEntry?: string | undefined;
  /**
   * The fleet's last rollout to name the host, and what it asked of it (status/fleet-asks.ts):
   * while the record is older than that rollout, a host that runs it was given it by nixship,
   * though its record does not say so yet (its deploy was interrupted, or killed, before it
   * wrote it). A record written since is the newer word.
   */
  readonly asked?: { readonly system: string; readonly startedAt: string } | undefined;
}

/**
 * The systems nixship left on a host, by its record:
 * - success: the system it was given, or the one it ran before (a `boot` or `test` deploy
 *   leaves that one running until a reboot, and going one step back is a rollback);
 * - failed: the system that failed, the one the record says it runs (it went back to it, or
 *   never left it), or the one it ran before; without one of the last two known, the record
 *   says too little;
 * - applying: the host is between two systems: not judged;
 * - rejected: the agent refused a release and changed nothing; what it ran before is not in
 *   the record: not judged.
 * Where the record is judged, the channel's entry for the host (what its latest release gave
 * it, which a host behind the channel has yet to apply) counts as well. Undefined: not judged.
 */
export function expectedSystems(
  record: StatusRecord | undefined,
  channelEntry: string | undefined,
): string[] | undefined {
  const fromRecord = recordSystems(record);
  if (fromRecord === undefined) return undefined;
  return [...new Set(channelEntry === undefined ? fromRecord : [...fromRecord, channelEntry])];
}

function recordSystems(record: StatusRecord | undefined): string[] | undefined {
  if (record === undefined || record.desired === null) return undefined;
  // What it was given, the one it ran before, and after a failed push deploy the system its
  // record says it runs (the one it went back to, or never left: only deploys and rollbacks
  // write push records). An agent's record may say what runs after a switch by hand: not that.
  const left = record.mode !== "agent" && record.state === "failed" ? record.current : null;
  const known = [record.desired, left, record.previous ?? null].filter(
    (p): p is string => p !== null,
  );
  switch (record.state) {
    case "success":
      return [...new Set(known)];
    case "failed":
      return known.length > 1 ? [...new Set(known)] : undefined;
    case "applying":
    case "rejected":
      return undefined;
  }
}

/** The host's drift, or undefined when it runs what nixship left on it or nobody can tell. */
export function driftOf(evidence: DriftEvidence): Drift | undefined {
  const { running } = evidence;
  if (running === null || running === undefined) return undefined;
  const expected = expectedSystems(evidence.record, evidence.channelEntry);
  if (expected === undefined || expected.includes(running)) return undefined;
  const { asked, record } = evidence;
  // The rollout's ask counts while the record is older than it (behind.ts recordSince).
  const older =
    asked !== undefined && record !== undefined && !recordSince(record, asked.startedAt);
  if (older && running === asked.system) return undefined;
  return { running, expected };
}
