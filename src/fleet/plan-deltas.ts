// The deltas a plan's hosts can use (docs/deltas.md, "Bases"): for each host that changes
// system with deltas on, the paths of its new closure that its running closure lacks, and the
// (target, base) pairs for them; the zstd each host applies them with, and why a host gets none;
// and, from what the cache holds of those pairs, what each host would fetch with deltas and
// without. Pure: deploy/ reads the closures (the ones the plan's diffs read) and the cache, and
// computes the pairs, each once however many hosts share it.
import { deltaPairsFor, pairId } from "../cache/delta-bases.js";
import type { DeltaLookup } from "../cache/delta-lookup.js";
import type { DeltaPair } from "../cache/delta-publish.js";
import type { PathInfo } from "../nix/closure.js";
import type { StorePath } from "../nix/store-path.js";
import { estimatedDeltaBytes } from "./delta-estimate.js";
import { closureZstd, type DeltaSwitch, type NoDeltaReason } from "./delta-tool.js";
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

/** A host that changes system with deltas on but gets none, and why. */
export interface NoDelta {
  readonly host: string;
  readonly reason: NoDeltaReason;
}

export interface PlanDeltaPairs {
  readonly hosts: readonly HostDeltaPairs[];
  /** Every pair once, in the order first met. */
  readonly pairs: readonly DeltaPair[];
  /** Hosts with deltas on whose running closure could not be read whole: they fetch whole. */
  readonly unread: readonly string[];
  /** Hosts that change with deltas on and get none for another reason. */
  readonly noDelta: readonly NoDelta[];
  /** The zstd each host is given to apply deltas with (its request's delta tool). */
  readonly tools: ReadonlyMap<string, StorePath>;
  /**
   * The pairs' paths the deployer's store holds, as it recorded them: a base the cache lacks is
   * read from the store's copy, checked against its NarHash, and any path recorded as the
   * cache's narinfo says is read from there too (deploy/deltas.ts, cache/delta-publish.ts).
   */
  readonly storeNars?: ReadonlyMap<StorePath, StoreNar>;
}

/** A path in the deployer's store: the NarHash and NarSize the store recorded. */
export type StoreNar = Pick<PathInfo, "narHash" | "narSize">;

/**
 * The plan's pairs. `deltasOf` says whether each host may get deltas and with what tool (true:
 * on, its tool given elsewhere); `held` whether a path can be a base the deployer computes
 * from (in the cache or its own store; default: every path): pairs with a base it cannot read
 * are left out, and a host left with none gets `no-base`.
 */
export function planDeltaPairs(
  hosts: readonly DiffHost[],
  closures: (root: StorePath) => ReadClosure,
  deltasOf: (host: string) => DeltaSwitch | boolean,
  held: (path: StorePath) => boolean = () => true,
): PlanDeltaPairs {
  const byPair = new Map<string, DeltaPair>();
  const out: HostDeltaPairs[] = [];
  const unread: string[] = [];
  const noDelta: NoDelta[] = [];
  const tools = new Map<string, StorePath>();
  const changing = new Set(diffHosts(hosts).map((h) => h.host));
  // Hosts that run the same system and get the same one share their pairs: made once.
  const memo = new Map<string, Moved>();
  for (const { host, current, desired } of hosts) {
    const given = deltasOf(host);
    const switched: DeltaSwitch =
      typeof given === "boolean"
        ? given
          ? { kind: "on", tool: undefined }
          : { kind: "off" }
        : given;
    if (switched.kind === "off") continue;
    if (switched.kind === "none") {
      if (changing.has(host)) noDelta.push({ host, reason: switched.reason });
      continue;
    }
    if (switched.tool !== undefined) tools.set(host, switched.tool);
    if (!changing.has(host) || current === undefined) continue;
    const key = `${current} ${desired}`;
    let moved = memo.get(key);
    if (moved === undefined) {
      moved = move(closures(current), closures(desired), held);
      memo.set(key, moved);
    }
    if (moved.kind === "unread") {
      unread.push(host);
      continue;
    }
    // Without a tool named, the host applies deltas with a zstd of the system it runs.
    const tool = switched.tool ?? (typeof given === "boolean" ? undefined : moved.zstd);
    if (tool === undefined && typeof given !== "boolean") {
      noDelta.push({ host, reason: "no-zstd" });
      continue;
    }
    if (tool !== undefined) tools.set(host, tool);
    if (moved.kind === "no-base") {
      noDelta.push({ host, reason: "no-base" });
      continue;
    }
    for (const pair of moved.found.pairs)
      if (!byPair.has(pairId(pair))) byPair.set(pairId(pair), pair);
    out.push({ host, ...moved.found });
  }
  return { hosts: out, pairs: [...byPair.values()], unread, noDelta, tools };
}

/** A move from one system to another, as far as deltas go. */
type Moved =
  | { readonly kind: "unread" }
  | { readonly kind: "no-base"; readonly zstd: StorePath | undefined }
  | {
      readonly kind: "pairs";
      readonly zstd: StorePath | undefined;
      readonly found: Omit<HostDeltaPairs, "host">;
    };

function move(before: ReadClosure, after: ReadClosure, held: (path: StorePath) => boolean): Moved {
  if (before.kind !== "complete" || after.kind !== "complete") return { kind: "unread" };
  const running = before.paths.map((p) => p.path);
  const zstd = closureZstd(running);
  const has = new Set(running);
  const lacking = after.paths.filter((p) => !has.has(p.path));
  const all = deltaPairsFor(
    running,
    lacking.map((p) => p.path),
  );
  const pairs = all.filter((pair) => held(pair.base));
  if (all.length > 0 && pairs.length === 0) return { kind: "no-base", zstd };
  return {
    kind: "pairs",
    zstd,
    found: {
      missing: lacking.length,
      missingNarBytes: lacking.reduce((sum, p) => sum + p.narSize, 0),
      lacking: lacking.map(({ path, narSize }) => ({ path, narSize })),
      pairs,
    },
  };
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
  /**
   * With pairs pending: the bytes expected with deltas once they are computed, an estimate
   * (delta-estimate.ts); published deltas count their size.
   */
  readonly estimated?: number;
}

/**
 * Each host's fetch (`HostDeltaFetch`) from the cache's `lookup` of the plan's pairs and
 * missing paths. A path comes by the delta of its first base (in the hosts' own order,
 * delta-bases.ts) that has one published; otherwise whole.
 */
export function deltaFetches(
  planned: PlanDeltaPairs,
  lookup: DeltaLookup,
  storeLacks: ReadonlyMap<string, ReadonlySet<StorePath>> = new Map(),
): HostDeltaFetch[] {
  const memo = new WeakMap<object, Omit<HostDeltaFetch, "host">>();
  return planned.hosts.map((host) => {
    // A host whose store said what it lacks fetches only those: its own count.
    const lacks = storeLacks.get(host.host);
    if (lacks !== undefined) return { host: host.host, ...fetchOf(host, lookup, lacks) };
    let fetch = memo.get(host.lacking);
    if (fetch === undefined) {
      fetch = fetchOf(host, lookup);
      memo.set(host.lacking, fetch);
    }
    return { host: host.host, ...fetch };
  });
}

function fetchOf(
  host: HostDeltaPairs,
  lookup: DeltaLookup,
  storeLacks?: ReadonlySet<StorePath>,
): Omit<HostDeltaFetch, "host"> {
  const lacking =
    storeLacks === undefined ? host.lacking : host.lacking.filter((p) => storeLacks.has(p.path));
  const pairsOf = new Map<StorePath, DeltaPair[]>();
  for (const pair of host.pairs)
    pairsOf.set(pair.target, [...(pairsOf.get(pair.target) ?? []), pair]);
  let byDelta = 0;
  let pending = 0;
  let withDeltas = 0;
  let estimated = 0;
  let whole = 0;
  let upperBound = false;
  for (const { path, narSize } of lacking) {
    const known = lookup.wholeBytes.get(path);
    if (known === undefined) upperBound = true;
    const wholeSize = known ?? narSize;
    whole += wholeSize;
    const pairs = pairsOf.get(path) ?? [];
    const states = pairs.map((p) => lookup.pairs.get(pairId(p)));
    const delta = states.find((s) => s?.kind === "delta");
    if (delta?.kind === "delta") {
      byDelta++;
      withDeltas += delta.bytes;
      estimated += delta.bytes;
      continue;
    }
    const waiting = pairs.find((_, i) => states[i] === undefined || states[i]?.kind === "pending");
    withDeltas += wholeSize;
    if (waiting === undefined) {
      estimated += wholeSize;
      continue;
    }
    pending++;
    estimated += estimatedDeltaBytes(waiting, wholeSize);
  }
  return {
    paths: lacking.length,
    byDelta,
    pending,
    withDeltas,
    whole,
    upperBound,
    ...(pending > 0 ? { estimated } : {}),
  };
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
