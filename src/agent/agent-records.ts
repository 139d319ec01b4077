// The agent's status records, each the next of the host's record (status/next-record.ts) after
// what the agent saw happen: a release it applies or applied, a release it refused, a system
// the host runs that its record does not name (switched by hand), a new boot. Pure: the
// records' property test runs these writers as the agent does.
import type { ReleaseHead } from "../release/release.js";
import { nextRecord, runningGeneration } from "../status/next-record.js";
import type { RecordParts, StatusRecord } from "../status/status.js";
import type { HostSystem } from "./activator.js";

/** What a record says of an apply: its outcome, what it pruned and fetched by delta, its log. */
export type RecordWhat = RecordParts["what"];

/** The agent writing: the host it runs on, and its own package (when it runs from the store). */
export interface AgentSelf {
  readonly host: string;
  readonly package: string | undefined;
}

/**
 * What the host runs, as a record names it: its generation only when the profile holds that
 * system (runningGeneration), its secrets and next boot where it said.
 */
export function recordSystem(system: HostSystem): NonNullable<RecordParts["system"]> {
  return {
    current: system.current,
    generation: runningGeneration(system),
    ...(system.secrets === undefined ? {} : { secrets: system.secrets }),
    ...(system.reboot === undefined ? {} : { reboot: system.reboot }),
  };
}

/** A release being applied, or how it ended. */
export interface ReleaseReport {
  readonly release: Pick<ReleaseHead, "channel" | "seq">;
  /** The system the release names for this host. */
  readonly path: string;
  readonly what: RecordWhat;
  /** What the host runs now; undefined: not known (while it applies, or it cannot be read). */
  readonly system: HostSystem | undefined;
  readonly startedAt: string;
  /** The system it ran before, when the release moves it; undefined: the record's own. */
  readonly previous: string | null | undefined;
  /**
   * The release only carried the host's entry: the release it replaced named the same for it.
   * Absent: it named the host anew, or that is not known.
   */
  readonly carried?: true;
  /** The release is a dry run (`--action dry-activate`): it asks nothing of the host. */
  readonly dryRun?: true;
}

export function releaseRecord(
  before: StatusRecord | undefined,
  self: AgentSelf,
  r: ReleaseReport,
  now: string,
): StatusRecord {
  const system = r.system && recordSystem(r.system);
  return nextRecord(before, {
    host: self.host,
    mode: "agent",
    release: { channel: r.release.channel, seq: r.release.seq },
    desired: r.path,
    // While the apply runs (a boot being judged), the generation it made is not named: a
    // failed judgement removes it, and Nix, by hand, may give its number to another system.
    system: system && (r.what.state === "applying" ? { ...system, generation: null } : system),
    ...(r.previous === undefined ? {} : { previous: r.previous }),
    // The release put the system there once it runs it, when it moved the host there (its
    // origin names who and from what); a host that ran it already keeps its record's word.
    ...(r.what.state === "success" && r.system?.current === r.path && r.previous !== undefined
      ? { origin: { kind: "release" as const, channel: r.release.channel, seq: r.release.seq } }
      : {}),
    agent: self.package,
    what: {
      ...r.what,
      ...(r.carried ? { carried: true as const } : {}),
      // Told on the record, so that its writer puts it on the release's marker alone (dryRun).
      ...(r.dryRun ? { action: "dry-activate" as const } : {}),
    },
    startedAt: r.startedAt,
    updatedAt: now,
  });
}

/**
 * Whether `record` is a report of a dry run: it asked nothing of the host, as a push deploy's
 * dry run writes no record (deploy/push-records.ts). It goes on its release's marker alone, for
 * the deploy that watches the release; the host's record keeps its word (what it was last
 * asked, how that went, and since when), so that no view takes the dry run's system for an ask.
 */
export function dryRun(record: Pick<StatusRecord, "action">): boolean {
  return record.action === "dry-activate";
}

/**
 * A release refused: by its signature, sequence or expiry (verify), its secrets, or a closure
 * the store could not give (realise): none says anything of the system it names.
 */
export interface Refused {
  readonly channel: string;
  /** The sequence number it claims; undefined: none to file it under. */
  readonly seq: number | undefined;
  /** The digest of the document refused (release-canonical.ts releaseDigest). */
  readonly digest: string;
  readonly phase: "verify" | "secrets" | "realise";
  /** The system it named for this host (secrets); null when it was not read that far. */
  readonly desired: string | null;
  readonly system: HostSystem | undefined;
  readonly message: string;
}

export function refusedRecord(
  before: StatusRecord | undefined,
  self: AgentSelf,
  r: Refused,
  now: string,
): StatusRecord {
  return nextRecord(before, {
    host: self.host,
    mode: "agent",
    release: r.seq === undefined ? null : { channel: r.channel, seq: r.seq },
    desired: r.desired,
    system: r.system && recordSystem(r.system),
    agent: self.package,
    what: {
      state: "rejected",
      phase: r.phase,
      error:
        r.phase === "realise"
          ? `release not applied, the store's fault: ${r.message}`
          : `release refused: ${r.message}`,
      rolledBack: null,
      refused: r.digest,
    },
    startedAt: now,
    updatedAt: now,
  });
}

/**
 * The host runs another system than its record says (someone switched it by hand, as
 * nixos-rebuild does): the record names what it runs, the system it ran before, and no origin
 * or delta of the system it left. Undefined: nothing to write (no record, the same system, or
 * another writer's apply under way).
 */
export function runningRecord(
  before: StatusRecord | undefined,
  self: AgentSelf,
  system: HostSystem,
  now: string,
): StatusRecord | undefined {
  if (before === undefined || before.state === "applying" || before.current === system.current) {
    return undefined;
  }
  return observed(before, self, system, now);
}

/**
 * What the host runs now, written whatever the record said: a boot other than the one the
 * record describes (it names what a reboot would load: the deployer's `--reboot auto` decides
 * from it), or a record gone from the store. Undefined: nothing to write (no record, or an
 * apply under way).
 */
export function observedRecord(
  before: StatusRecord | undefined,
  self: AgentSelf,
  system: HostSystem,
  now: string,
): StatusRecord | undefined {
  if (before === undefined || before.state === "applying") return undefined;
  return observed(before, self, system, now);
}

/**
 * The record an observation of the host (switched by hand, booted anew) is folded from: the
 * apply it describes (release, state, desired system, error, log) from this agent's own last
 * record, never from the store's copy, which whoever can write the store could forge and the
 * agent would then sign (docs/agent.md, "Signed reports"); the systems (what it ran, before,
 * its generation) from the store's copy, which another writer (a push deploy of the host) may
 * have moved on since. Undefined without a record of its own.
 */
export function observationBase(
  own: StatusRecord | undefined,
  stored: StatusRecord | undefined,
): StatusRecord | undefined {
  if (own === undefined || stored === undefined) return own;
  return {
    ...own,
    current: stored.current,
    generation: stored.generation,
    ...(stored.previous === undefined ? {} : { previous: stored.previous }),
  };
}

/**
 * `before` with what the host runs now: the apply it describes (release, desired system,
 * outcome, log, start) stays; what belonged to the system it ran is the fold's to keep or drop.
 */
function observed(
  before: StatusRecord,
  self: AgentSelf,
  system: HostSystem,
  now: string,
): StatusRecord {
  return nextRecord(before, {
    host: self.host,
    mode: before.mode,
    release:
      before.channel !== null && before.seq !== null
        ? { channel: before.channel, seq: before.seq }
        : null,
    desired: before.desired,
    system: recordSystem(system),
    agent: self.package,
    what: {
      state: before.state,
      phase: before.phase,
      error: before.error,
      rolledBack: before.rolledBack,
      ...(before.pruned === undefined ? {} : { pruned: before.pruned }),
      ...(before.log === undefined ? {} : { log: before.log }),
      // Said of the release it names, which stays.
      ...(before.carried === undefined ? {} : { carried: before.carried }),
    },
    startedAt: before.startedAt,
    updatedAt: now,
  });
}
