// A rollout as it ended where its deploy stopped: the hosts of a record whose deployer is gone
// (rolloutGone: killed while running or paused) or that a second interrupt ended, each as it was
// left. The asks (fleet-asks.ts) judge hosts by it, and the dashboard's rollout page and
// /metrics show a record whose deployer is gone by it, so that no view says such a rollout
// still runs. Pure.
import {
  inFlight,
  type RolloutHost,
  type RolloutRecord,
  rolloutAbandoned,
  rolloutQuiet,
} from "./rollout.js";

/**
 * An entry of a rollout whose deploy stopped when it last wrote the record: a host still
 * pending was never started, one mid-activation failed there.
 */
export function asEnded(entry: RolloutHost, lastWritten: string): RolloutHost {
  const stopped = `its deploy stopped writing its record at ${lastWritten} (killed, or interrupted twice)`;
  if (entry.state === "pending") return { ...entry, state: "not-started", message: stopped };
  if (inFlight(entry.state)) return { ...entry, state: "failed", message: stopped };
  return entry;
}

/**
 * `record` as a view shows it at `now`: one whose deployer went quiet (rolloutQuiet, as the
 * views judge its hosts: fleet-asks.ts) or is gone (rolloutAbandoned) is interrupted where it
 * last wrote it, each host as asEnded reads it; any other is itself. (Undoing it waits for
 * rolloutAbandoned, which allows for clocks minutes apart.)
 */
export function rolloutAsShown(record: RolloutRecord, now: Date): RolloutRecord {
  if (!rolloutQuiet(record, now) && !rolloutAbandoned(record, now)) return record;
  const ended = (hosts: readonly RolloutHost[]) => hosts.map((h) => asEnded(h, record.updatedAt));
  return {
    ...record,
    state: "interrupted",
    waves: record.waves.map((w) => ({ ...w, hosts: ended(w.hosts) })),
    ...(record.skipped === undefined ? {} : { skipped: ended(record.skipped) }),
  };
}
