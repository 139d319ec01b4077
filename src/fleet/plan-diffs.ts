// The plan's closure diffs: for each host that changes system, what changes package by package
// between the closure it runs and the one it gets, hosts with the same changes grouped. Pure:
// deploy/ reads the closures (the desired ones from the local store, the running ones from the
// cache's narinfos) and hands their metadata in.
import type { PathInfo } from "../nix/closure.js";
import {
  type ClosureDiff,
  type ClosurePath,
  diffClosures,
  groupByChange,
  type HostDiff,
  type HostDiffGroup,
} from "../nix/closure-diff.js";
import type { StorePath } from "../nix/store-path.js";

/** The metadata a closure is followed through; a `PathInfo` or a narinfo fits. */
export type ClosureNode = Pick<PathInfo, "path" | "narSize" | "references">;

/**
 * Where a running system's closure was read: the fleet's cache, the deployer's own store, or
 * the host itself (only where neither had it).
 */
export type ClosureSource = "cache" | "local-store" | "host";

/** A running system's closure as a host reported it, or why it could not (by system). */
export type HostRead =
  | { readonly kind: "read"; readonly nodes: readonly ClosureNode[] }
  | { readonly kind: "failed"; readonly reason: string };

/** Hosts with the same changes, and where the closure they run was read. */
export interface PlanDiffGroup extends HostDiffGroup {
  readonly currentFrom: ClosureSource;
}

/** A host that changes system but whose running closure could not be read, and why. */
export interface UnavailableDiff {
  readonly host: string;
  readonly reason: string;
}

export interface PlanDiffs {
  /** In the order of their first host in the plan. */
  readonly groups: readonly PlanDiffGroup[];
  readonly unavailable: readonly UnavailableDiff[];
  /** Narinfos read from the fleet's cache for the running systems' closures. */
  readonly narinfosRead: number;
}

/** A host as the plan has it: what it runs and what it should run. */
export interface DiffHost {
  readonly host: string;
  readonly action: "activate" | "skip" | "unreachable";
  readonly current: StorePath | undefined;
  readonly desired: StorePath;
}

/** How reading the running closures from the fleet's cache went. */
export type CacheRead =
  /** Not needed (the local store had them all), or the fleet has no cache. */
  | { readonly kind: "not-read"; readonly why: "not-needed" | "no-cache" }
  | {
      readonly kind: "read";
      /** Metadata of the paths read, by store path. */
      readonly nodes: ReadonlyMap<StorePath, ClosureNode>;
      /** Paths the cache was asked for and does not have. */
      readonly missing: ReadonlySet<StorePath>;
      readonly narinfosRead: number;
      /** Set when the walk stopped at this many narinfos, leaving paths unread. */
      readonly stoppedAt?: number;
    }
  | { readonly kind: "failed"; readonly reason: string };

/** The hosts a plan diffs: reachable, running a known system that is not the desired one. */
export function diffHosts<T extends DiffHost>(hosts: readonly T[]): T[] {
  return hosts.filter(
    (h) => h.action !== "unreachable" && h.current !== undefined && h.current !== h.desired,
  );
}

/** A closure followed through `nodes`: all its paths, or the first one without metadata. */
export type ClosureLookup =
  | { readonly kind: "complete"; readonly paths: readonly ClosurePath[] }
  | { readonly kind: "incomplete"; readonly lacking: StorePath };

export function closureOf(
  root: StorePath,
  nodes: (path: StorePath) => ClosureNode | undefined,
): ClosureLookup {
  const seen = new Set<StorePath>([root]);
  const paths: ClosurePath[] = [];
  const stack = [root];
  for (let path = stack.pop(); path !== undefined; path = stack.pop()) {
    const node = nodes(path);
    if (node === undefined) return { kind: "incomplete", lacking: path };
    paths.push({ path, narSize: node.narSize });
    for (const ref of node.references) {
      if (!seen.has(ref)) {
        seen.add(ref);
        stack.push(ref);
      }
    }
  }
  return { kind: "complete", paths };
}

/**
 * The running systems the local store cannot describe in full: those whose closures the cache
 * must be asked for (each once).
 */
export function currentsToRead(
  hosts: readonly DiffHost[],
  local: ReadonlyMap<StorePath, ClosureNode>,
): StorePath[] {
  const lookup = (p: StorePath) => local.get(p);
  const roots = new Set<StorePath>();
  for (const { current } of diffHosts(hosts)) {
    if (current !== undefined && closureOf(current, lookup).kind === "incomplete") {
      roots.add(current);
    }
  }
  return [...roots];
}

/** A closure as read, and where its root was read. */
export type ReadClosure = ClosureLookup & { readonly from: ClosureSource };

/**
 * The closures the plan reads, each root once: from `local` where it is whole there, else from
 * `local` and the cache together, else with what the host itself sent.
 */
export function closureReader(
  local: ReadonlyMap<StorePath, ClosureNode>,
  cache: CacheRead,
  asked: ReadonlyMap<StorePath, HostRead> = new Map(),
): (root: StorePath) => ReadClosure {
  const fromLocal = (p: StorePath) => local.get(p);
  const cached = cache.kind === "read" ? cache.nodes : new Map<StorePath, ClosureNode>();
  const fromBoth = (p: StorePath) => local.get(p) ?? cached.get(p);
  const closures = new Map<StorePath, ReadClosure>();
  return (root: StorePath) => {
    let found = closures.get(root);
    if (found === undefined) {
      const own = closureOf(root, fromLocal);
      const both = own.kind === "complete" ? own : closureOf(root, fromBoth);
      const host = asked.get(root);
      found =
        own.kind === "complete"
          ? { ...own, from: "local-store" }
          : both.kind === "complete" || host?.kind !== "read"
            ? { ...both, from: "cache" }
            : { ...closureOf(root, lookupIn(host.nodes, fromBoth)), from: "host" };
      closures.set(root, found);
    }
    return found;
  };
}

/**
 * Each host's diff from the closures read: the desired one from `local` (the planner already
 * requires it whole), the running one from `local` where it is whole there, else from `local`
 * and the cache together. Hosts without a diff are listed with why; diffs of hosts with the
 * same change are grouped (`groupByChange`, within each source).
 */
export function planDiffs(
  hosts: readonly DiffHost[],
  local: ReadonlyMap<StorePath, ClosureNode>,
  cache: CacheRead,
  asked: ReadonlyMap<StorePath, HostRead> = new Map(),
): PlanDiffs {
  const targets = diffHosts(hosts);
  const closure = closureReader(local, cache, asked);
  // One diff per (current, desired) pair, whatever the number of hosts that share it.
  const pairs: Record<ClosureSource, Map<string, { hosts: string[]; diff: ClosureDiff }>> = {
    cache: new Map(),
    "local-store": new Map(),
    host: new Map(),
  };
  const unavailable: UnavailableDiff[] = [];
  for (const { host, current, desired } of targets) {
    if (current === undefined) continue;
    const before = closure(current);
    const after = closure(desired);
    if (after.kind === "incomplete") {
      // The planner refuses such a plan first; kept so that the function is total.
      unavailable.push({
        host,
        reason: `the local store has no metadata for ${after.lacking} of the desired system ${desired}`,
      });
    } else if (before.kind === "incomplete") {
      const hostRead = asked.get(current);
      const why = whyUnread(current, before.lacking, cache);
      unavailable.push({
        host,
        reason:
          hostRead === undefined
            ? `${why}; the host was not asked`
            : hostRead.kind === "failed"
              ? `${why}, and the host could not say: ${hostRead.reason}`
              : `${why}, and the host's own answer lacks ${before.lacking}`,
      });
    } else {
      const key = `${current}\n${desired}`;
      const pair = pairs[before.from].get(key);
      if (pair !== undefined) pair.hosts.push(host);
      else
        pairs[before.from].set(key, {
          hosts: [host],
          diff: diffClosures(before.paths, after.paths),
        });
    }
  }
  // Pairs with equal diffs grouped (each pair stands in for its hosts), hosts in the plan's order.
  const order = new Map(targets.map((t, i) => [t.host, i]));
  const byOrder = (a: string, b: string) => (order.get(a) ?? 0) - (order.get(b) ?? 0);
  const groups = (["cache", "local-store", "host"] as const)
    .flatMap((from) => {
      const byPair = pairs[from];
      const stand = [...byPair].map(([key, p]): HostDiff => ({ host: key, diff: p.diff }));
      return groupByChange(stand).map(
        (g): PlanDiffGroup => ({
          hosts: g.hosts.flatMap((key) => byPair.get(key)?.hosts ?? []).sort(byOrder),
          currentFrom: from,
          diff: g.diff,
        }),
      );
    })
    .sort((a, b) => byOrder(a.hosts[0] as string, b.hosts[0] as string));
  return { groups, unavailable, narinfosRead: cache.kind === "read" ? cache.narinfosRead : 0 };
}

/** Why the running closure of `current` could not be read whole (`lacking`: the first gap). */
function whyUnread(current: StorePath, lacking: StorePath, cache: CacheRead): string {
  const what =
    lacking === current
      ? `its system ${current}`
      : `${lacking}, which its system ${current} references`;
  switch (cache.kind) {
    case "not-read":
      return cache.why === "no-cache"
        ? `the local store lacks ${what}, and the fleet has no cache to read it from`
        : `the local store lacks ${what}`;
    case "failed":
      return `the local store lacks ${what}, and reading the fleet's cache failed: ${cache.reason}`;
    case "read":
      if (!cache.missing.has(lacking) && cache.stoppedAt !== undefined) {
        return `reading the closure of its system ${current} from the fleet's cache stopped at the bound of ${cache.stoppedAt} narinfos`;
      }
      return `neither the fleet's cache nor the local store has ${what}`;
  }
}

/** A lookup in the nodes a host sent, then in what the deployer and the cache had. */
function lookupIn(
  nodes: readonly ClosureNode[],
  otherwise: (path: StorePath) => ClosureNode | undefined,
): (path: StorePath) => ClosureNode | undefined {
  const byPath = new Map(nodes.map((n) => [n.path, n]));
  return (path) => byPath.get(path) ?? otherwise(path);
}

/**
 * The running systems no diff could be made for because neither the local store nor the cache
 * had their closure: each with a host that runs it, to ask (each system once).
 */
export function systemsToAsk(
  hosts: readonly DiffHost[],
  diffs: PlanDiffs,
): { readonly system: StorePath; readonly host: string }[] {
  const unread = new Set(diffs.unavailable.map((u) => u.host));
  const bySystem = new Map<StorePath, string>();
  for (const { host, current } of diffHosts(hosts)) {
    if (current !== undefined && unread.has(host) && !bySystem.has(current)) {
      bySystem.set(current, host);
    }
  }
  return [...bySystem].map(([system, host]) => ({ system, host }));
}
