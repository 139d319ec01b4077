// What the dashboard shows, as data: one snapshot of the fleet per poll (the status rows the CLI
// shows, the releases of every channel, the newest rollout), and the pure questions pages and
// metrics ask of it: each host's state in one word, filters, counts. No I/O here.
import type { DeliveryMode, FleetHost } from "../fleet/fleet.js";
import { rolloutAsShown } from "../status/ended-rollout.js";
import { FUTURE_SKEW, type FutureRollout } from "../status/future-rollouts.js";
import {
  type RolloutHostState,
  type RolloutRecord,
  rolloutEntries,
  rolloutGone,
} from "../status/rollout.js";
import { type HostState, hostState } from "../views/host-state.js";
import type { BoardChannel } from "../views/release-board.js";
import type { RolloutRead } from "../views/rollout-watch.js";
import type { StatusRow } from "../views/status-rows.js";

export interface Snapshot {
  /** Bumped each time what the snapshot holds changes. */
  readonly version: number;
  /** When the poll that made it ended. */
  readonly at: string;
  /** The status rows, as `status --stored --json` gives them, in fleet order. */
  readonly rows: readonly StatusRow[];
  /** Each host's tags (from the fleet file). */
  readonly tags: ReadonlyMap<string, readonly string[]>;
  readonly channels: readonly BoardChannel[];
  /** The newest rollout, of those not dated more than FUTURE_SKEW ahead of the clock. */
  readonly rollout: RolloutRead;
  /** The first rollout record dated further ahead than that, passed over (null: none). */
  readonly futureRollout: FutureRollout | null;
  readonly warnings: readonly string[];
}

/** `/nix/store/HASH-NAME` as its name and the first 8 characters of its hash. */
export function shortSystem(
  path: string | null | undefined,
): { name: string; hash: string } | null {
  if (path === null || path === undefined) return null;
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dash = base.indexOf("-");
  if (dash < 0) return { name: base, hash: "" };
  return { name: base.slice(dash + 1), hash: base.slice(0, 8) };
}

export { runningOf } from "../views/status-rows.js";

export { FUTURE_SKEW };

/**
 * When the host was last heard of: its record's time or its agent's newest heartbeat, of those
 * not more than FUTURE_SKEW after `now`.
 */
export function lastSeen(row: StatusRow, now: Date): string | null {
  return (
    heardAt(row)
      .filter((t) => !isAhead(t, now))
      .sort()
      .at(-1) ?? null
  );
}

/** A time of the host's that lastSeen passed over for being in the future (null: none). */
export function seenAhead(row: StatusRow, now: Date): string | null {
  return heardAt(row).find((t) => isAhead(t, now)) ?? null;
}

function heardAt(row: StatusRow): string[] {
  if (row.source === "live") return [];
  return [row.updatedAt, row.heartbeatAt].filter((t): t is string => typeof t === "string");
}

function isAhead(time: string, now: Date): boolean {
  return Date.parse(time) > now.getTime() + FUTURE_SKEW;
}

export interface HostFilter {
  readonly tag?: string | undefined;
  readonly state?: string | undefined;
  /** Part of the name, any case. */
  readonly query?: string | undefined;
}

export function filterRows(
  snapshot: Pick<Snapshot, "rows" | "tags">,
  filter: HostFilter,
): StatusRow[] {
  const query = filter.query?.trim().toLowerCase() ?? "";
  return snapshot.rows.filter(
    (row) =>
      (filter.tag === undefined ||
        filter.tag === "" ||
        (snapshot.tags.get(row.host) ?? []).includes(filter.tag)) &&
      (filter.state === undefined || filter.state === "" || hostState(row) === filter.state) &&
      (query === "" || row.host.toLowerCase().includes(query)),
  );
}

/** Every tag of the fleet's hosts, sorted. */
export function allTags(hosts: readonly FleetHost[]): string[] {
  return [...new Set(hosts.flatMap((h) => h.tags))].sort();
}

/** Hosts by state and mode: what the hosts page sums up and `/metrics` exports. */
export function countByStateAndMode(
  rows: readonly StatusRow[],
): Map<HostState, Map<DeliveryMode, number>> {
  const counts = new Map<HostState, Map<DeliveryMode, number>>();
  for (const row of rows) {
    const state = hostState(row);
    const byMode = counts.get(state) ?? new Map<DeliveryMode, number>();
    byMode.set(row.mode, (byMode.get(row.mode) ?? 0) + 1);
    counts.set(state, byMode);
  }
  return counts;
}

/** Whether the host's record says a reboot would load a new kernel, initrd or modules. */
export function rebootDue(row: StatusRow): boolean {
  if (row.source === "live") return row.reachable && row.reboot?.due === true;
  return row.reboot?.due === true;
}

/**
 * Hosts of the rollout by state: its waves' and those it left alone (skipped: unreachable, up
 * to date, a rollback's left or refused), every entry once.
 */
export function rolloutCounts(record: RolloutRecord): Map<RolloutHostState, number> {
  const counts = new Map<RolloutHostState, number>();
  for (const h of rolloutEntries(record)) counts.set(h.state, (counts.get(h.state) ?? 0) + 1);
  return counts;
}

/** The system profile's generation the row gives (null: unknown). */
export function generationOf(row: StatusRow): number | null {
  if (row.source === "live") return row.reachable ? (row.generation ?? null) : null;
  return row.generation ?? null;
}

/**
 * The newest rollout as the rollout page shows it at the poll's time: a record whose deployer
 * is gone is interrupted there (ended-rollout.ts); undefined when there is none to show.
 */
export function shownRollout(s: Snapshot | undefined): RolloutRecord | undefined {
  if (s?.rollout.status !== "found") return undefined;
  return rolloutAsShown(s.rollout.record, new Date(s.at));
}

/**
 * What of the newest rollout's view the clock alone changes (its record unchanged): whether it
 * is shown interrupted (quiet, or its deployer gone) and why. A record whose deployer was
 * killed is written no more, so only this says its page must be drawn anew.
 */
export function rolloutClockView(s: Pick<Snapshot, "rollout" | "at">): string {
  if (s.rollout.status !== "found") return "";
  const at = new Date(s.at);
  return JSON.stringify([
    rolloutAsShown(s.rollout.record, at).state,
    rolloutGone(s.rollout.record, at) ?? null,
  ]);
}
