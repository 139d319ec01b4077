// What passed and what failed on each host, from a channel's releases and the status markers
// hosts left for them (status.ts). Pure: given releases and each host's final state per
// release, the history per host, and the rules a release's entries follow from it.
import type { StorePath } from "../nix/store-path.js";
import type { Release, ReleaseHost, ReleaseKind } from "../release/release.js";
import type { StatusState } from "../status/status.js";

/** One release as the history needs it, with the final state each host reached on it. */
export interface ReleaseReport {
  readonly release: Pick<Release, "seq" | "kind" | "hosts">;
  /** Host → its final state for this release (applying hosts are left out). */
  readonly states: ReadonlyMap<string, StatusState>;
  /** Hosts whose success on this release has a failure marker beside it (ProgressEntry). */
  readonly failedToo?: ReadonlySet<string>;
}

/** A system a host confirmed healthy (success) or failed on, in one release. */
export interface HostEvent {
  readonly seq: number;
  readonly kind: ReleaseKind;
  readonly path: StorePath;
  readonly outcome: "success" | "failed";
  /**
   * Set when the release before it (seq - 1, among those read) named the host on the same
   * system: the release only carried the host's entry (every release of an agent rollout names
   * every host of the channel). Absent: it changed the entry, or the release before is unread.
   */
  readonly carried?: true;
  /** A success whose host also left a failure marker on the release (ReleaseReport.failedToo). */
  readonly failedToo?: true;
}

/** One host's events, oldest release first. */
export type HostHistory = readonly HostEvent[];

/** Each host's history. `rejected` (a release the agent refused) says nothing of a system. */
export function hostHistories(reports: readonly ReleaseReport[]): Map<string, HostEvent[]> {
  const histories = new Map<string, HostEvent[]>();
  const ordered = [...reports].sort((a, b) => a.release.seq - b.release.seq);
  for (const [i, { release, states, failedToo }] of ordered.entries()) {
    const before = ordered[i - 1]?.release;
    const previous = before?.seq === release.seq - 1 ? before : undefined;
    for (const [host, state] of states) {
      const path = release.hosts[host]?.path;
      if (path === undefined || (state !== "success" && state !== "failed")) continue;
      const events = histories.get(host) ?? [];
      const carried = previous?.hosts[host]?.path === path;
      events.push({
        seq: release.seq,
        kind: release.kind,
        path,
        outcome: state,
        ...(carried ? { carried: true as const } : {}),
        ...(state === "success" && failedToo?.has(host) ? { failedToo: true as const } : {}),
      });
      histories.set(host, events);
    }
  }
  return histories;
}

/** The system failed on the host, and has not been confirmed there since. */
export function hasFailed(history: HostHistory, path: StorePath): boolean {
  const last = history.findLast((e) => e.path === path);
  return last?.outcome === "failed";
}

/** The systems confirmed healthy on the host (and not failed since), newest confirmation first. */
export function confirmedSystems(history: HostHistory): StorePath[] {
  const seen = new Set<StorePath>();
  const found: StorePath[] = [];
  for (const e of [...history].reverse()) {
    if (seen.has(e.path)) continue;
    seen.add(e.path);
    if (e.outcome === "success") found.push(e.path);
  }
  return found;
}

/** The system most recently confirmed healthy on the host, other than `except`. */
export function lastConfirmed(history: HostHistory, except?: StorePath): StorePath | undefined {
  return confirmedSystems(history).find((p) => p !== except);
}

/**
 * Where a system stands in a host's past, for walking back: the newest release of kind deploy
 * that put it on the host and that the host confirmed it in (a rollback does not move a system
 * forward, nor does a deploy that only carried the host's entry, so two rollbacks never flip
 * between two systems), else the first release it was confirmed in at all.
 */
function rank(history: HostHistory, path: StorePath): number | undefined {
  let deployed: number | undefined;
  let first: number | undefined;
  for (const e of history) {
    if (e.path !== path || e.outcome !== "success") continue;
    if (e.kind === "deploy" && e.carried !== true) deployed = e.seq;
    first ??= e.seq;
  }
  return deployed ?? first;
}

export type StepBack =
  | { readonly status: "found"; readonly path: StorePath }
  | { readonly status: "none"; readonly why: string };

/**
 * The system a rollback sends the host to: the confirmed system that came before `current`.
 * Repeating it from the result walks further back; it never returns to `current`.
 */
export function stepBack(
  history: HostHistory,
  host: string,
  current: StorePath | undefined,
): StepBack {
  const now = current === undefined ? undefined : rank(history, current);
  let best: { path: StorePath; rank: number } | undefined;
  for (const path of confirmedSystems(history)) {
    if (path === current) continue;
    const r = rank(history, path);
    if (r === undefined || (now !== undefined && r >= now)) continue;
    if (best === undefined || r > best.rank) best = { path, rank: r };
  }
  if (best !== undefined) return { status: "found", path: best.path };
  return {
    status: "none",
    why:
      now === undefined
        ? `no system was confirmed healthy on ${host} in the releases read`
        : `no system was confirmed healthy on ${host} before ${current} in the releases read`,
  };
}

/**
 * The systems `steps` rollbacks take the host through, from its newest confirmed system: that
 * system, then each stepBack from the last (fewer when the walk ends).
 */
export function rollbackWalk(history: HostHistory, host: string, steps: number): StorePath[] {
  const start = confirmedSystems(history)[0];
  if (start === undefined) return [];
  const walk = [start];
  while (walk.length < steps) {
    const back = stepBack(history, host, walk.at(-1));
    if (back.status !== "found") break;
    walk.push(back.path);
  }
  return walk;
}

/** What a host's entry becomes when a release carries it over (see carryEntry). */
export type Carried =
  | { readonly status: "kept"; readonly entry: ReleaseHost | undefined }
  | {
      readonly status: "replaced";
      readonly failed: StorePath;
      /** The host's last confirmed system; undefined: none known, the entry is dropped. */
      readonly entry: ReleaseHost | undefined;
    };

/**
 * A release keeps a host's entry unless it names a system that failed on that host: then the
 * host's last confirmed system, with the rest of the entry as it was (its own checks, its delta
 * tool, its secrets: as a rollback release sends a host back), or no entry when none is known
 * (the agent then leaves the host on what it runs).
 */
export function carryEntry(
  history: HostHistory | undefined,
  entry: ReleaseHost | undefined,
): Carried {
  if (entry === undefined || history === undefined || !hasFailed(history, entry.path)) {
    return { status: "kept", entry };
  }
  const back = lastConfirmed(history, entry.path);
  return { status: "replaced", failed: entry.path, entry: back && { ...entry, path: back } };
}

/** A host of a release as `release show` marks it. */
export interface ReleaseHostView {
  readonly host: string;
  /** The release's entry for the host. */
  readonly desired: StorePath;
  /** What the host last reported running (its latest status record); null: unknown. */
  readonly running: string | null;
  /** The system most recently confirmed healthy on the host; null: none in the history. */
  readonly lastConfirmed: StorePath | null;
}

export function releaseHostViews(
  release: Pick<Release, "hosts">,
  running: ReadonlyMap<string, string | null>,
  histories: ReadonlyMap<string, HostHistory>,
): ReleaseHostView[] {
  return Object.entries(release.hosts).map(([host, { path }]) => ({
    host,
    desired: path,
    running: running.get(host) ?? null,
    lastConfirmed: lastConfirmed(histories.get(host) ?? []) ?? null,
  }));
}
