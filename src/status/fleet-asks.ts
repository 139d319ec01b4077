// What the fleet last asked of each host: the newest rollout record that named the host with a
// system to run. Every view judges a host against it, so that a host a rollout skipped (it was
// unreachable, its wave never started) is behind until a later rollout or its own record says
// otherwise. Pure: the reading is views/rollout-watch.ts.
import { type RolloutHost, type RolloutRecord, rolloutEntries } from "./rollout.js";

/** One rollout's ask of one host. */
export interface Ask {
  readonly rollout: {
    readonly id: string;
    readonly key: string;
    readonly startedAt: string;
    /** Set when the rollout was a rollback: the rollout it undid. */
    readonly undoes?: string;
  };
  /** The system the rollout named for the host. */
  readonly system: string;
  /** What came of it (or where it is, while the rollout runs). */
  readonly entry: RolloutHost;
}

/**
 * Each of `hosts`' newest ask among `records` (newest first). An entry that names no system (a
 * rollback's refused host) asks nothing: an older rollout's ask stands.
 */
export function lastAsks(
  records: readonly { readonly key: string; readonly record: RolloutRecord }[],
  hosts: Iterable<string>,
): Map<string, Ask> {
  const wanted = new Set(hosts);
  const asks = new Map<string, Ask>();
  for (const { key, record } of records) {
    if (asks.size === wanted.size) break;
    for (const entry of rolloutEntries(record)) {
      if (entry.system === null || !wanted.has(entry.host) || asks.has(entry.host)) continue;
      asks.set(entry.host, {
        rollout: {
          id: record.id,
          key,
          startedAt: record.startedAt,
          ...(record.undoes === undefined ? {} : { undoes: record.undoes }),
        },
        system: entry.system,
        entry,
      });
    }
  }
  return asks;
}
