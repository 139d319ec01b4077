// What a channel's next release starts from (pure): the current release's entries, each carried
// over unless it names a system that failed on its host, with a note for the operator about each
// entry replaced; and whether a release already states a planned set of entries.

import type { Release, ReleaseHost } from "../release/release.js";
import { canonicalJson } from "../release/release-canonical.js";
import { carryEntry, type HostHistory } from "./host-history.js";

export interface CarriedOver {
  /** Every host's entry as the next release should have it. */
  readonly entries: Record<string, ReleaseHost>;
  /** Entries replaced because they named a failed system, for the operator. */
  readonly notes: readonly string[];
}

/** The entries of `current` (none when undefined), each carried over as carryEntry says. */
export function carryOver(
  current: Pick<Release, "seq" | "hosts"> | undefined,
  histories: ReadonlyMap<string, HostHistory>,
): CarriedOver {
  const entries: Record<string, ReleaseHost> = {};
  const notes: string[] = [];
  for (const [name, entry] of Object.entries(current?.hosts ?? {})) {
    const carried = carryEntry(histories.get(name), entry);
    if (carried.entry !== undefined) entries[name] = carried.entry;
    if (carried.status === "replaced") {
      notes.push(
        carried.entry === undefined
          ? `${name}: release ${current?.seq} named ${carried.failed}, which failed there, and no system was confirmed on ${name} in the releases read: the new release names none for it (its agent leaves it on what it runs)`
          : `${name}: release ${current?.seq} named ${carried.failed}, which failed there: the new release names its last confirmed system ${carried.entry.path}`,
      );
    }
  }
  return { entries, notes };
}

/**
 * Whether `named` (a release's hosts) has exactly `entries`: same hosts, systems, secrets,
 * checks, reboots and delta tools.
 */
export function statesEntries(
  named: Readonly<Record<string, ReleaseHost>>,
  entries: Readonly<Record<string, ReleaseHost>>,
): boolean {
  return (
    Object.keys(entries).length === Object.keys(named).length &&
    Object.entries(entries).every(([host, e]) => sameEntry(named[host], e))
  );
}

/**
 * Whether two entries ask the same of their host: the same system, secrets (by bundle: the
 * manifest follows from it), checks, reboot and delta tool. An entry that differs only in its
 * reboot or delta tool is a new ask: a channel left with an old `reboot` would reboot a host
 * reimaged later, and one with an old tool would fetch through it.
 */
function sameEntry(a: ReleaseHost | undefined, b: ReleaseHost): boolean {
  return (
    a?.path === b.path &&
    a.secrets?.bundle === b.secrets?.bundle &&
    canonicalJson(a.policy ?? null) === canonicalJson(b.policy ?? null) &&
    canonicalJson(a.reboot ?? null) === canonicalJson(b.reboot ?? null) &&
    a.deltaTool === b.deltaTool
  );
}
