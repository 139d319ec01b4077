// The per-host history (history-store.ts) with each host's failures checked against its key: a
// failure steers what the channel names (a release never names, for a host, a system that failed
// on it: carry-over replaces the entry with an older system) and where a rollback goes, so for a
// host whose key the fleet knows, a failure counts only on a report its key signed
// (status/report-signature.ts). A success that has a failure marker beside it on its release is
// checked too: the newer marker's word counts, and a success written after a signed failure
// would erase it. Failures are few; each costs one GET (two when it is not believed).
import { InputError } from "../errors.js";
import { progressKey, type StatusState } from "../status/status.js";
import { readJudgedReport } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import type { HistoryRead } from "./history-store.js";
import type { HostEvent } from "./host-history.js";

/** Reports read at once. */
const READS = 8;

/** A report not believed, and what the history holds in its place. */
export interface UnbelievedReport {
  readonly host: string;
  readonly seq: number;
  /** What the report not believed said. */
  readonly claimed: "success" | "failed";
  readonly why: string;
  /** The host's other final report on that release, which its key signed, or nothing. */
  readonly instead: "success" | "failed" | "nothing";
}

/**
 * `history` with each failure of a host named in `reportKeys`, and each success with a failure
 * marker beside it, checked: kept when the host's key signed it (on the system the release
 * named), else replaced by the host's other signed final report on that release, or dropped.
 */
export async function believedHistory(
  store: ObjectStore,
  channel: string,
  history: HistoryRead,
  reportKeys: ReadonlyMap<string, string>,
): Promise<{ history: HistoryRead; unbelieved: UnbelievedReport[] }> {
  const checks: { host: string; event: HostEvent }[] = [];
  for (const [host, events] of history.hosts) {
    if (!reportKeys.has(host)) continue;
    for (const event of events) {
      if (event.outcome === "failed" || event.failedToo === true) checks.push({ host, event });
    }
  }
  if (checks.length === 0) return { history, unbelieved: [] };
  const judged = await mapLimit(checks, READS, async ({ host, event }) => {
    const hostKey = reportKeys.get(host) as string;
    const signed = async (state: StatusState) => {
      const place = { host, channel, seq: event.seq, state };
      try {
        const read = await readJudgedReport(
          store,
          progressKey(channel, event.seq, host, state),
          hostKey,
          place,
        );
        if (read === undefined) return { why: `there is no ${state} report` };
        if (!read.trusted) return { why: read.why };
        if (read.record.desired !== event.path) {
          return { why: `it reports on ${read.record.desired ?? "no system"}, not ${event.path}` };
        }
        return { ok: true as const };
      } catch (err) {
        // A report that does not parse is not believed; a store that does not answer decides
        // nothing: the history is not read, rather than read without the host's failures.
        if (!(err instanceof InputError)) throw err;
        return { why: err.message };
      }
    };
    const claimed = event.outcome;
    const other = claimed === "failed" ? "success" : "failed";
    const said = await signed(claimed);
    if ("ok" in said) return undefined;
    const instead = "ok" in (await signed(other)) ? other : "nothing";
    return { host, event, claimed, why: said.why, instead } as const;
  });
  const unbelieved: UnbelievedReport[] = [];
  const replaced = new Map<HostEvent, HostEvent | undefined>();
  for (const j of judged) {
    if (j === undefined) continue;
    const { host, event, claimed, why, instead } = j;
    unbelieved.push({ host, seq: event.seq, claimed, why, instead });
    const { failedToo: _, ...rest } = event;
    replaced.set(event, instead === "nothing" ? undefined : { ...rest, outcome: instead });
  }
  const hosts = new Map(
    [...history.hosts].map(([host, events]) => [
      host,
      events.flatMap((e) => (replaced.has(e) ? (replaced.get(e) ?? []) : [e])),
    ]),
  );
  return { history: { ...history, hosts }, unbelieved };
}

/** What the operator is told of a report not believed. */
export function unbelievedNote(u: UnbelievedReport): string {
  const report = u.claimed === "failed" ? "a failure report" : "a success report";
  const counted =
    u.instead === "nothing"
      ? "it is not counted"
      : `its signed ${u.instead === "success" ? "success" : "failure"} on that release counts instead`;
  return `${u.host}: ${report} on release ${u.seq} is not believed (${u.why}): ${counted}`;
}
