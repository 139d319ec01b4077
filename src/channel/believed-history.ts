// The per-host history (history-store.ts) with each host's failures checked against its key: a
// failure steers what the channel names (a release never names, for a host, a system that failed
// on it: carry-over replaces the entry with an older system) and where a rollback goes, so for a
// host whose key the fleet knows, a failure counts only on a report its key signed
// (status/report-signature.ts). Failures are few; each costs one GET (two when it is not believed).
import { InputError } from "../errors.js";
import { progressKey, type StatusState } from "../status/status.js";
import { readJudgedReport } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import type { HistoryRead } from "./history-store.js";
import type { HostEvent } from "./host-history.js";

/** Reports read at once. */
const READS = 8;

/** A failure not believed, and what the history holds in its place. */
export interface UnbelievedFailure {
  readonly host: string;
  readonly seq: number;
  readonly why: string;
  /** The host's success on that release, which its key signed, or nothing. */
  readonly instead: "success" | "nothing";
}

/**
 * `history` with each failure of a host named in `reportKeys` checked: kept when the host's key
 * signed it (on the system the release named), else replaced by the host's signed success on
 * that release, or dropped.
 */
export async function believedHistory(
  store: ObjectStore,
  channel: string,
  history: HistoryRead,
  reportKeys: ReadonlyMap<string, string>,
): Promise<{ history: HistoryRead; unbelieved: UnbelievedFailure[] }> {
  const checks: { host: string; event: HostEvent }[] = [];
  for (const [host, events] of history.hosts) {
    if (!reportKeys.has(host)) continue;
    for (const event of events) if (event.outcome === "failed") checks.push({ host, event });
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
    const failed = await signed("failed");
    if ("ok" in failed) return undefined;
    const success = await signed("success");
    return {
      host,
      event,
      why: failed.why,
      instead: "ok" in success ? "success" : "nothing",
    } as const;
  });
  const unbelieved: UnbelievedFailure[] = [];
  const replaced = new Map<HostEvent, HostEvent | undefined>();
  for (const j of judged) {
    if (j === undefined) continue;
    unbelieved.push({ host: j.host, seq: j.event.seq, why: j.why, instead: j.instead });
    replaced.set(j.event, j.instead === "success" ? { ...j.event, outcome: "success" } : undefined);
  }
  const hosts = new Map(
    [...history.hosts].map(([host, events]) => [
      host,
      events.flatMap((e) => (replaced.has(e) ? (replaced.get(e) ?? []) : [e])),
    ]),
  );
  return { history: { ...history, hosts }, unbelieved };
}

/** What the operator is told of a failure not believed. */
export function unbelievedNote(u: UnbelievedFailure): string {
  const counted =
    u.instead === "success"
      ? "its signed success on that release counts instead"
      : "it is not counted";
  return `${u.host}: a failure report on release ${u.seq} is not believed (${u.why}): ${counted}`;
}
