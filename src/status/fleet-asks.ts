// What the fleet last asked of each host: the newest rollout record that named the host with a
// system to run. Every view judges a host against it, so that a host a rollout skipped (it was
// unreachable, its wave never started) is behind until a later rollout or its own record says
// otherwise. Pure: the reading is views/rollout-watch.ts.
import { asEnded } from "./ended-rollout.js";
import {
  type RolloutHost,
  type RolloutRecord,
  type RolloutReleases,
  rolloutAbandoned,
  rolloutEntries,
  rolloutLive,
  rolloutQuiet,
  undoneHosts,
} from "./rollout.js";

/** One rollout's ask of one host. */
export interface Ask {
  readonly rollout: {
    readonly id: string;
    readonly key: string;
    readonly startedAt: string;
    /** Set when the rollout was a rollback: the rollout it undid. */
    readonly undoes?: string;
    /** An agent rollout's releases (its record's), where it names them. */
    readonly releases?: RolloutReleases;
    /** Who started it (its record's `by`), where it says. */
    readonly by?: string;
    /** Set while its deployer is at work: running or paused, and not gone. */
    readonly live?: true;
  };
  /**
   * The releases of the agent rollouts newer than it (among those read) that did not name the
   * host: each carried the host's entry, as every release names every host of the channel.
   */
  readonly carriedBy?: readonly RolloutReleases[];
  /** The system the rollout named for the host. */
  readonly system: string;
  /** What came of it (or where it is, while the rollout runs). */
  readonly entry: RolloutHost;
}

/**
 * Each of `hosts`' newest ask among `records` (newest first), judged at `now`. Asking nothing,
 * so that an older rollout's ask stands:
 * - an entry that names no system (a rollback's refused or left host);
 * - every entry of a rollout a rollback among `records` undid, for the hosts that rollback
 *   names (undoneHosts: a rollback of some hosts leaves the rollout standing for the others);
 * - an aborted rollout's hosts it never reached (the operator stopped it before them);
 * - every entry of a dry run (`--action dry-activate`).
 * A rollout whose deployer is gone (rolloutAbandoned: killed, running or paused) asks as it
 * ended: a host still pending was never started, one mid-activation failed there unless it
 * runs its system.
 */
export function lastAsks(
  records: readonly { readonly key: string; readonly record: RolloutRecord }[],
  hosts: Iterable<string>,
  now: Date = new Date(),
): Map<string, Ask> {
  const wanted = new Set(hosts);
  const asks = new Map<string, Ask>();
  const undone = undoneHosts(records.map(({ record }) => record));
  // The agent rollouts read so far (newer than the one at hand), with the hosts each named.
  const newer: { readonly releases: RolloutReleases; readonly named: ReadonlySet<string> }[] = [];
  for (const { key, record } of records) {
    if (asks.size === wanted.size) break;
    // A dry run changes nothing and asks nothing: the asks before it stand.
    if (record.action === "dry-activate") continue;
    // A record left running by a killed deploy, or one a second interrupt ended with hosts
    // still mid-activation: each of those hosts as it was left.
    const ended =
      rolloutQuiet(record, now) || rolloutAbandoned(record, now) || !rolloutLive(record.state);
    const undoneFor = undone.get(record.id);
    for (const written of rolloutEntries(record)) {
      if (undoneFor?.has(written.host)) continue;
      const entry = ended ? asEnded(written, record.updatedAt) : written;
      if (record.state === "aborted" && entry.state === "not-started") continue;
      if (entry.system === null || !wanted.has(entry.host) || asks.has(entry.host)) continue;
      const carriedBy = newer.flatMap((n) => (n.named.has(entry.host) ? [] : [n.releases]));
      asks.set(entry.host, {
        ...(carriedBy.length === 0 ? {} : { carriedBy }),
        rollout: {
          id: record.id,
          key,
          startedAt: record.startedAt,
          ...(record.undoes === undefined ? {} : { undoes: record.undoes }),
          ...(record.releases === undefined ? {} : { releases: record.releases }),
          ...(record.by === undefined ? {} : { by: record.by }),
          ...(ended ? {} : { live: true as const }),
        },
        system: entry.system,
        entry,
      });
    }
    if (record.releases !== undefined) {
      newer.push({
        releases: record.releases,
        named: new Set(rolloutEntries(record).map((e) => e.host)),
      });
    }
  }
  return asks;
}

/**
 * The hosts among `hosts` that a rollout older than `records` (newest first, the newest read
 * so far) could still ask something of: none of `records` asks anything of them (`asks`), and
 * no record of their own (`since`: when its deploy or agent began it) started at or after the
 * oldest of `records`, which would be the newer word (behind.ts). Empty when `records` is.
 */
export function asksOpen(
  records: readonly { readonly record: RolloutRecord }[],
  asks: ReadonlyMap<string, Ask>,
  hosts: Iterable<string>,
  since: ReadonlyMap<string, string>,
): string[] {
  const oldest = records.at(-1)?.record.startedAt;
  if (oldest === undefined) return [];
  const before = Date.parse(oldest);
  return [...hosts].filter((host) => {
    if (asks.has(host)) return false;
    const own = since.get(host);
    return own === undefined || Date.parse(own) < before;
  });
}

/** A host's failure in a rollout that a rollback has since undone for it (undoneFailures). */
export interface UndoneFailure {
  /** The rollout it failed in, and when that rollout started. */
  readonly rollout: string;
  readonly startedAt: string;
  /** The system it failed on there. */
  readonly system: string;
  /** When the rollback that undid it started. */
  readonly undoneAt: string;
}

/**
 * For each host that failed in a rollout (rolled back or not) which a rollback among `records`
 * (newest first) undid for it, the newest such failure. Only rollouts read among `records`
 * count: the rollback's own record names what it undid, the undone record what the host failed
 * on.
 */
export function undoneFailures(
  records: readonly { readonly record: RolloutRecord }[],
): Map<string, UndoneFailure> {
  const byId = new Map(records.map(({ record }) => [record.id, record]));
  const failures = new Map<string, UndoneFailure>();
  for (const { record: rollback } of records) {
    const undone = rollback.undoes === undefined ? undefined : byId.get(rollback.undoes);
    if (undone === undefined) continue;
    const named = new Set(rolloutEntries(rollback).map((e) => e.host));
    for (const entry of rolloutEntries(undone)) {
      if (!named.has(entry.host) || failures.has(entry.host) || entry.system === null) continue;
      if (entry.state !== "failed" && entry.state !== "rolled-back") continue;
      failures.set(entry.host, {
        rollout: undone.id,
        startedAt: undone.startedAt,
        system: entry.system,
        undoneAt: rollback.startedAt,
      });
    }
  }
  return failures;
}
