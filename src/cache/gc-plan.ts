// What a garbage collection deletes, decided from the listing and the marked closure alone
// (pure): the rules, in one place, that the collector and its dry run both follow.
import type { CacheInventory, CacheObject } from "./inventory.js";

/** Why a store path is kept: where the collector found it. */
export const ROOT_SOURCES = [
  "release",
  "status",
  "history",
  "live",
  "pin",
  "secrets",
  "agent",
  "recent",
  "grace",
] as const;
export type RootSource = (typeof ROOT_SOURCES)[number];

/** Store paths (or hash parts) to keep with their closures, and where each came from. */
export type GcRoots = Map<string, Set<RootSource>>;

export function addRoot(roots: GcRoots, path: string, source: RootSource): void {
  const sources = roots.get(path);
  if (sources === undefined) roots.set(path, new Set([source]));
  else sources.add(source);
}

export const OBJECT_KINDS = ["narinfo", "nar", "listing"] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

export interface Tally {
  objects: number;
  bytes: number;
}

export type Tallies = Record<ObjectKind, Tally>;

export function emptyTallies(): Tallies {
  return {
    narinfo: { objects: 0, bytes: 0 },
    nar: { objects: 0, bytes: 0 },
    listing: { objects: 0, bytes: 0 },
  };
}

export function tally(tallies: Tallies, kind: ObjectKind, objects: Iterable<CacheObject>): void {
  for (const o of objects) {
    tallies[kind].objects++;
    tallies[kind].bytes += o.size;
  }
}

/** Whether an object is old enough to delete: written before the grace period began. */
export function pastGrace(o: CacheObject, cutoff: number): boolean {
  return o.modified < cutoff;
}

/**
 * The narinfos to delete: those the mark did not reach, written before `cutoff`. A narinfo
 * younger than that is a root of its own (the collector marks it), so it never shows here.
 */
export function doomedNarInfos(
  inventory: CacheInventory,
  marked: ReadonlySet<string>,
  cutoff: number,
): CacheObject[] {
  const doomed: CacheObject[] = [];
  for (const [hash, o] of inventory.narinfos) {
    if (!marked.has(hash) && pastGrace(o, cutoff)) doomed.push(o);
  }
  return doomed;
}

/** Listings (`.ls`) whose narinfo is doomed or absent, written before `cutoff`. */
export function doomedListings(
  inventory: CacheInventory,
  remaining: ReadonlySet<string>,
  cutoff: number,
): CacheObject[] {
  const doomed: CacheObject[] = [];
  for (const [hash, o] of inventory.listings) {
    if (!remaining.has(hash) && pastGrace(o, cutoff)) doomed.push(o);
  }
  return doomed;
}

/**
 * The NARs to delete: those no remaining narinfo names (the NARs of deleted narinfos, and
 * orphans: left by an interrupted push, or by another tool), written before `cutoff`.
 */
export function doomedNars(
  inventory: CacheInventory,
  named: ReadonlySet<string>,
  cutoff: number,
): CacheObject[] {
  const doomed: CacheObject[] = [];
  for (const [key, o] of inventory.nars) {
    if (!named.has(key) && pastGrace(o, cutoff)) doomed.push(o);
  }
  return doomed;
}

/** S3 Standard's list price per GB-month (2^30 bytes) in us-east-1, first 50 TB: USD 0.023. */
export const DEFAULT_PRICE_PER_GB_MONTH = 0.023;

/** What storing `bytes` for a month costs at `pricePerGbMonth`. */
export function monthlyCost(bytes: number, pricePerGbMonth: number): number {
  return (bytes / 2 ** 30) * pricePerGbMonth;
}

/**
 * The narinfos to delete in layers, referrers first: `first()` is every one that no other
 * refers to; `next(deleted)`, given those of the last layer that were deleted, is every one
 * whose last referrer went with them. One whose referrer could not be deleted never comes
 * (it stays, with what it refers to). Nix closures have no cycles, apart from a path
 * referring to itself, which does not count.
 */
export function referrersFirst(
  hashes: Iterable<string>,
  references: ReadonlyMap<string, readonly string[]>,
): { first(): string[]; next(deleted: readonly string[]): string[] } {
  const doomed = new Set(hashes);
  const referrers = new Map<string, number>();
  for (const h of doomed) referrers.set(h, 0);
  for (const h of doomed) {
    for (const r of references.get(h) ?? []) {
      if (r !== h && doomed.has(r)) referrers.set(r, (referrers.get(r) ?? 0) + 1);
    }
  }
  return {
    first: () => [...doomed].filter((h) => referrers.get(h) === 0),
    next(deleted) {
      const layer: string[] = [];
      for (const h of deleted) {
        for (const r of references.get(h) ?? []) {
          if (r === h || !doomed.has(r)) continue;
          const left = (referrers.get(r) ?? 0) - 1;
          referrers.set(r, left);
          if (left === 0) layer.push(r);
        }
      }
      return layer;
    },
  };
}
