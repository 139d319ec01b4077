// The deltas a plan's hosts can use (docs/deltas.md, "Bases"): for each host that changes
// system with deltas on, the paths of its new closure that its running closure lacks, and the
// (target, base) pairs for them; and, from what the cache holds of those pairs, what each host
// would fetch with deltas and without. Pure: deploy/ reads the closures (the ones the plan's
// diffs read) and the cache, and computes the pairs, each once however many hosts share it.
import { deltaPairsFor, pairId } from "../cache/delta-bases.js";
import type { DeltaLookup } from "../cache/delta-lookup.js";
import type { DeltaPair } from "../cache/delta-publish.js";
import type { StorePath } from "../nix/store-path.js";
import { type ClosureNode, type DiffHost, diffHosts, type ReadClosure } from "./plan-diffs.js";

/** One host's part: what it lacks, and the pairs whose deltas could bring it. */
export interface HostDeltaPairs {
  readonly host: string;
  /** Paths of the desired closure its running closure lacks. */
  readonly missing: number;
  /** Their NAR bytes (uncompressed), what the host fetches without deltas, before compression. */
  readonly missingNarBytes: number;
  /** Those paths (shared by the hosts that make the same move). */
  readonly lacking: readonly Pick<ClosureNode, "path" | "narSize">[];
  readonly pairs: readonly DeltaPair[];
}

export interface PlanDeltaPairs {
  readonly hosts: readonly HostDeltaPairs[];
  /** Every pair once, in the order first met. */
  readonly pairs: readonly DeltaPair[];
  /** Hosts with deltas on whose running closure could not be read whole: they fetch whole. */
  readonly unread: readonly string[];
}

export function planDeltaPairs(
  hosts: readonly DiffHost[],
  closures: (root: StorePath) => ReadClosure,
  deltasOn: (host: string) => boolean,
): PlanDeltaPairs {
  const byPair = new Map<string, DeltaPair>();
  const out: HostDeltaPairs[] = [];
  const unread: string[] = [];
  // Hosts that run the same system and get the same one share their pairs: made once.
  const memo = new Map<string, Omit<HostDeltaPairs, "host">>();
  for (const { host, current, desired } of diffHosts(hosts)) {
    if (current === undefined || !deltasOn(host)) continue;
    const key = `${current} ${desired}`;
    let found = memo.get(key);
    if (found === undefined) {
      const before = closures(current);
      const after = closures(desired);
      if (before.kind !== "complete" || after.kind !== "complete") {
        unread.push(host);
        continue;
      }
      const has = new Set(before.paths.map((p) => p.path));
      const lacking = after.paths.filter((p) => !has.has(p.path));
      found = {
        missing: lacking.length,
        missingNarBytes: lacking.reduce((sum, p) => sum + p.narSize, 0),
        lacking: lacking.map(({ path, narSize }) => ({ path, narSize })),
        pairs: deltaPairsFor(
          before.paths.map((p) => p.path),
          lacking.map((p) => p.path),
        ),
      };
      memo.set(key, found);
    }
    for (const pair of found.pairs) if (!byPair.has(pairId(pair))) byPair.set(pairId(pair), pair);
    out.push({ host, ...found });
  }
  return { hosts: out, pairs: [...byPair.values()], unread };
}

/** What one host would fetch from the cache, with deltas and without (the plan shows it). */
export interface HostDeltaFetch {
  readonly host: string;
  /** The paths it lacks. */
  readonly paths: number;
  /** Of them, the ones a published delta brings. */
  readonly byDelta: number;
  /** Of them, the ones whose deltas are not computed yet (the deploy computes them first). */
  readonly pending: number;
  /** Bytes fetched with the deltas published now, and without any. */
  readonly withDeltas: number;
  readonly whole: number;
  /** Some path is not in the cache yet: its NAR size (uncompressed) stands in, an upper bound. */
  readonly upperBound: boolean;
}

/**
 * Each host's fetch (`HostDeltaFetch`) from the cache's `lookup` of the plan's pairs and
 * missing paths. A path comes by the delta of its first base (in the hosts' own order,
 * delta-bases.ts) that has one published; otherwise whole.
 */
export function deltaFetches(planned: PlanDeltaPairs, lookup: DeltaLookup): HostDeltaFetch[] {
  const memo = new WeakMap<object, Omit<HostDeltaFetch, "host">>();
  return planned.hosts.map((host) => {
    let fetch = memo.get(host.lacking);
    if (fetch === undefined) {
      fetch = fetchOf(host, lookup);
      memo.set(host.lacking, fetch);
    }
    return { host: host.host, ...fetch };
  });
}

function fetchOf(host: HostDeltaPairs, lookup: DeltaLookup): Omit<HostDeltaFetch, "host"> {
  const pairsOf = new Map<StorePath, DeltaPair[]>();
  for (const pair of host.pairs)
    pairsOf.set(pair.target, [...(pairsOf.get(pair.target) ?? []), pair]);
  let byDelta = 0;
  let pending = 0;
  let withDeltas = 0;
  let whole = 0;
  let upperBound = false;
  for (const { path, narSize } of host.lacking) {
    const known = lookup.wholeBytes.get(path);
    if (known === undefined) upperBound = true;
    const wholeSize = known ?? narSize;
    whole += wholeSize;
    const states = (pairsOf.get(path) ?? []).map((p) => lookup.pairs.get(pairId(p)));
    const delta = states.find((s) => s?.kind === "delta");
    if (delta?.kind === "delta") {
      byDelta++;
      withDeltas += delta.bytes;
      continue;
    }
    if (states.some((s) => s === undefined || s.kind === "pending")) pending++;
    withDeltas += wholeSize;
  }
  return { paths: host.lacking.length, byDelta, pending, withDeltas, whole, upperBound };
}

/**
 * The plan's pairs in the order to compute them, so that what saves the most bytes is ready
 * first: each target's first base before any second one (a host takes the first base's delta
 * it finds), then by the NAR bytes the pair stands for over all the hosts that lack its target
 * (a shared pair saves as much for each), then as first met.
 */
export function rankDeltaPairs(planned: Pick<PlanDeltaPairs, "hosts" | "pairs">): DeltaPair[] {
  const rank = new Map<string, { base: number; bytes: number }>();
  for (const host of planned.hosts) {
    const narSize = new Map(host.lacking.map((p) => [p.path, p.narSize]));
    const nth = new Map<StorePath, number>();
    for (const pair of host.pairs) {
      const base = nth.get(pair.target) ?? 0;
      nth.set(pair.target, base + 1);
      const id = pairId(pair);
      const was = rank.get(id);
      rank.set(id, {
        base: Math.min(was?.base ?? base, base),
        bytes: (was?.bytes ?? 0) + (narSize.get(pair.target) ?? 0),
      });
    }
  }
  const order = planned.pairs.map((pair, i) => ({
    pair,
    i,
    ...(rank.get(pairId(pair)) ?? { base: 0, bytes: 0 }),
  }));
  order.sort((a, b) => a.base - b.base || b.bytes - a.bytes || a.i - b.i);
  return order.map((o) => o.pair);
}

/**
 * Whether `target`'s path is settled by the pairs `done` so far: its bases' pairs in order, up
 * to the first that has a delta, are all done (a host takes the first base's delta it finds).
 */
export function targetSettled(
  pairs: readonly DeltaPair[],
  done: (pair: DeltaPair) => "delta" | "none" | undefined,
): boolean {
  for (const pair of pairs) {
    const state = done(pair);
    if (state === undefined) return false;
    if (state === "delta") return true;
  }
  return true;
}
