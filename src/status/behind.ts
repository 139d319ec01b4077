// Whether a host is behind what the fleet last asked of it (status/fleet-asks.ts): the newest
// rollout that named it gave it a system it does not run, and no record of the host since says
// otherwise. Pure; every view (status, the dashboard, plan) shows the same judgement.

import { storeName } from "../nix/store-path.js";
import type { Ask, UndoneFailure } from "./fleet-asks.js";
import type { RolloutHostState } from "./rollout.js";
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
  /**
   * Set when the host's record, written in or since that rollout, tells its failure there
   * (toldFailure): its state is then the record's (failed, or rolled back), not behind. Also
   * set for an agent host whose record only confirms what it went back to (its agent reports
   * success on the rollback release that named it): the rollout tells the failure, and
   * `rolledBack` whether it went back.
   */
  readonly failed?: true;
  /** With `failed`, from the rollout's word (not the record's): the host went back. */
  readonly rolledBack?: true;
}

/**
 * `running`: what the host runs (its live answer, or its record's word; null or undefined: not
 * known). Only a rollout that did not give the host its system (it skipped it as unreachable,
 * never started its wave, or the host failed there) leaves it behind; a host it gave its system
 * and that runs another since drifts, or was moved by a later change (drift.ts judges that). A
 * record the host's deploy or agent wrote since the rollout started is the newer word, so the ask
 * judges only hosts the rollout wrote nothing for, and those whose record tells their failure
 * there (toldFailure): the rollout is named beside the failure.
 */
export function behindOf(
  ask: Ask | undefined,
  record:
    | Pick<StatusRecord, "startedAt" | "state" | "desired" | "mode" | "channel" | "seq" | "carried">
    | undefined,
  running: string | null | undefined,
): Behind | undefined {
  if (ask === undefined || !MISSED.has(ask.entry.state)) return undefined;
  const newer = record !== undefined && recordSince(record, ask.rollout.startedAt);
  // An older record's failure is not this rollout's, though it failed on the same system.
  const failed = newer && toldFailure(ask, record);
  const carried = newer && !failed && carriedOnly(ask, record);
  if (newer && !failed && !carried) return undefined;
  if (running === ask.system) return undefined;
  const said = ask.entry.message === null ? "" : `: ${ask.entry.message}`;
  // An agent host that failed there and went back reports success on the release that named
  // what it went back to: the rollout's word tells the failure, as an ssh host's record does.
  const wentBack = carried && ask.entry.state === "rolled-back";
  return {
    wants: ask.system,
    rollout: ask.rollout.id,
    at: ask.rollout.startedAt,
    why: `${WHY[ask.entry.state as keyof typeof WHY]}${said}`,
    ...(failed || wentBack ? { failed: true as const } : {}),
    ...(wentBack ? { rolledBack: true as const } : {}),
  };
}

/**
 * The id of the rollout `record` tells the host failed in and went back from by itself, when a
 * rollback has since undone that rollout for the host (`undone`: fleet-asks.ts undoneFailures):
 * its failure is then no longer what the fleet asks of it, which is what it ran before, what it
 * runs. The record must be the one that rollout wrote (its failure on that system, since that
 * rollout started, before the rollback). A host that failed and did not go back, the rollback
 * sends back (or refuses), and its newer record tells that. Else undefined.
 */
export function failureUndone(
  record: Pick<StatusRecord, "state" | "rolledBack" | "desired" | "startedAt"> | undefined,
  undone: UndoneFailure | undefined,
): string | undefined {
  if (undone === undefined || record?.state !== "failed" || record.rolledBack !== true) {
    return undefined;
  }
  const written = recordSince(record, undone.startedAt) && !recordSince(record, undone.undoneAt);
  return written && record.desired === undone.system ? undone.rollout : undefined;
}

/**
 * Whether `record` was written in or since the rollout that started at `rolloutStart`: then it
 * is the newer word on the host than that rollout's ask.
 */
export function recordSince(
  record: Pick<StatusRecord, "startedAt">,
  rolloutStart: string,
): boolean {
  return Date.parse(record.startedAt) >= Date.parse(rolloutStart);
}

/**
 * Whether the host's record tells its failure at the rollout's ask: it failed on the system the
 * rollout named, as the rollout says. The record is then no newer word, and the row names the
 * rollout (its state stays the record's: failed, or rolled back).
 */
export function toldFailure(
  ask: Pick<Ask, "system" | "entry">,
  record: Pick<StatusRecord, "state" | "desired">,
): boolean {
  return (
    (ask.entry.state === "failed" || ask.entry.state === "rolled-back") &&
    record.state === "failed" &&
    record.desired === ask.system
  );
}

/**
 * Whether an agent's record only confirms the entry the rollout left the host on: every release
 * names every host of the channel, so a host of a later wave, one a rollback release carried
 * back, or one the survey found unreachable (its agent paused or offline) reports success on
 * the rollout's own releases on the system it ran before; and so it does on the releases of a
 * later agent rollout that did not name it (another deploy, of other hosts: `carriedBy`), and
 * on a refresh, which its agent marks (`carried`).
 * Newer than the rollout, such a report is no newer word on what it asked, when it names what
 * the host ran before (`before`, where the rollout knew it). A release that named the host anew
 * and belongs to no rollout read (`release publish --on` it, `rollback --on` it) is the newer
 * word, as is a report of another system, and any record of a push deploy (written only for a
 * host it asked something of). Of a record that does not say it was carried (an older agent's),
 * with a rollout that does not name its releases (older), it is judged by time alone.
 */
function carriedOnly(
  ask: Pick<Ask, "system" | "entry" | "rollout" | "carriedBy">,
  record: Pick<StatusRecord, "desired" | "mode" | "channel" | "seq" | "carried">,
): boolean {
  const before = ask.entry.before;
  const seq = record.seq;
  if (record.mode !== "agent" || seq === null || record.desired === ask.system) return false;
  // What it ran before, when the survey knew it (a host it found unreachable, such as an
  // agent paused or offline, it did not ask).
  if (before !== undefined && before !== null && record.desired !== before) return false;
  if (record.carried === true) return true;
  const releases = ask.rollout.releases;
  if (releases === undefined || record.channel !== releases.channel) return false;
  const carrying = [releases, ...(ask.carriedBy ?? [])];
  return carrying.some((r) => r.channel === record.channel && r.seqs.includes(seq));
}

/** What a rollout that left a host without its system says of it, by the host's state there. */
const WHY = {
  unreachable: "skipped as unreachable",
  "not-started": "not started",
  failed: "failed",
  "rolled-back": "rolled back",
  // A rollout running or paused now, whose wave for it has not started.
  pending: "waiting for its wave",
} as const satisfies Partial<Record<RolloutHostState, string>>;
const MISSED: ReadonlySet<RolloutHostState> = new Set(Object.keys(WHY) as RolloutHostState[]);

/** Steps of an entry in flight during which the host's own script runs (and holds its lock). */
const ON_THE_HOST: ReadonlySet<string> = new Set(["realise", "secrets", "profile", "switch"]);

/**
 * A host asked live (its answer: `running`, and no activation under way or awaiting its
 * confirmation) that a rollout still in flight there did not leave on its system: the rollout
 * says its script runs there (activating, in a step the host's script takes) or awaits its
 * checks (health), yet the host runs another system with nothing under way. Its activation
 * ended without its deploy (killed or gone): the host went back by itself (its confirmation
 * window, its activation timeout). Its deploy, when alive, writes the same soon after. A record
 * of the host written since the rollout started is the newer word. Else undefined.
 */
export function endedWithoutDeploy(
  ask: Ask | undefined,
  record: Pick<StatusRecord, "startedAt"> | undefined,
  running: string | null | undefined,
): Behind | undefined {
  if (ask === undefined || running === ask.system) return undefined;
  const { state, phase } = ask.entry;
  const onHost = state === "health" || (state === "activating" && ON_THE_HOST.has(phase ?? ""));
  if (!onHost) return undefined;
  if (record !== undefined && recordSince(record, ask.rollout.startedAt)) return undefined;
  return {
    wants: ask.system,
    rollout: ask.rollout.id,
    at: ask.rollout.startedAt,
    why: `its activation there ended in ${phase ?? state} and the host went back, while the rollout's record still has it in flight: its deploy is gone, or has not written yet`,
  };
}

/** One line for a person: "behind rollout ID (why): wants NAME". */
export function behindText(behind: Behind): string {
  return `behind rollout ${behind.rollout} (${behind.why}): should run ${storeName(behind.wants)}`;
}
