// What a garbage collection deletes, decided from the listing and the marked closure alone
// (pure): the rules, in one place, that the collector and its dry run both follow.
import { HASH_PART_LENGTH, STORE_DIR } from "../nix/store-path.js";
import type { Tally } from "../store/object-store.js";
import { deltaTargetHashPart } from "./delta-path.js";
import { type CacheInventory, type CacheObject, skipNoteTargetOf } from "./inventory.js";

/** Why a store path is kept: where the collector found it. */
export const ROOT_SOURCES = [
  "release",
  "status",
  "history",
  "rollout",
  "live",
  "pin",
  "secrets",
  "deltas",
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

/** Where each root was named ("host atka3", "pin installer"), for what a report says of it. */
export type RootOrigins = Map<string, Set<string>>;

export function addOrigin(origins: RootOrigins, path: string, origin: string): void {
  const seen = origins.get(path);
  if (seen === undefined) origins.set(path, new Set([origin]));
  else seen.add(origin);
}

/**
 * Something that names roots and could not be read (a status record, a release or one of its
 * shards, a pin, a host that did not answer): what it would keep is unknown.
 */
export interface UnreadableRoot {
  /** What the operator names to collect without it: a host, or the object's key. */
  readonly name: string;
  /** What could not be read, and why. */
  readonly problem: string;
}

/**
 * A host whose status record could not be read (malformed, or too large): a host writes its own
 * record, so one host cannot stop every collection with it. What else names the host is kept
 * for it instead, and the report names it.
 */
export interface UnreadRecord {
  readonly host: string;
  /** Why its record could not be read. */
  readonly problem: string;
  /** The store paths kept for it from its releases' entries, rollouts and earlier records. */
  readonly kept: readonly string[];
}

/** The roots as read under the collection lock. */
export interface RootsRead {
  readonly roots: GcRoots;
  readonly origins: RootOrigins;
  /** Roots that could not be read: while any is left, nothing is deleted. */
  readonly unreadable: readonly UnreadableRoot[];
  /** Unreadable roots the operator chose to collect without (`--skip-roots NAME`). */
  readonly skipped: readonly UnreadableRoot[];
  /**
   * Releases every full reader refuses (a host named twice): they keep nothing (a host whose
   * agent applied its entry from a sound shard keeps its system by its record); named with the
   * readers' error (`name`: the release file's key).
   */
  readonly refused?: readonly UnreadableRoot[];
  /** Hosts whose record could not be read, kept from what else names them. */
  readonly unreadRecords?: readonly UnreadRecord[];
  /** Secrets bundles and release shards, and whether what the collection keeps names each. */
  readonly sideObjects?: readonly SideObject[];
}

/** Splits what could not be read into what blocks the sweep and what the operator let go. */
export function judgeUnreadable(
  found: readonly UnreadableRoot[],
  skip: ReadonlySet<string>,
): { unreadable: UnreadableRoot[]; skipped: UnreadableRoot[] } {
  const unreadable: UnreadableRoot[] = [];
  const skipped: UnreadableRoot[] = [];
  const seen = new Set<string>();
  for (const u of found) {
    const id = `${u.name}\0${u.problem}`;
    if (seen.has(id)) continue;
    seen.add(id);
    (skip.has(u.name) ? skipped : unreadable).push(u);
  }
  return { unreadable, skipped };
}

/** A root whose narinfo (by the root's hash) describes another path. */
export interface MalformedRoot {
  readonly path: string;
  /** The path the narinfo of that hash describes: kept, with its closure. */
  readonly describes: string;
  readonly origins: readonly string[];
}

/**
 * The roots named as full store paths whose hash part's narinfo describes another path: the
 * collector keeps what the hash names (a record may be wrong, a hash is never collected under
 * a host's feet) and reports each with where it was named.
 */
export function malformedRoots(
  roots: Iterable<string>,
  describedBy: (hashPart: string) => string | undefined,
  origins: RootOrigins,
): MalformedRoot[] {
  const out: MalformedRoot[] = [];
  for (const path of roots) {
    if (!path.startsWith(`${STORE_DIR}/`)) continue;
    const described = describedBy(path.slice(STORE_DIR.length + 1, STORE_DIR.length + 33));
    if (described !== undefined && described !== path)
      out.push({ path, describes: described, origins: [...(origins.get(path) ?? [])].sort() });
  }
  return out;
}

/** A store path a collection deleted (or, in a dry run, would). */
export interface DeletedPath {
  readonly storePath: string;
  readonly narinfo: string;
  /** Its NAR's key, when it went too (another narinfo may still name it). */
  readonly nar: string | null;
  /** The narinfo's and the NAR's bytes. */
  readonly bytes: number;
}

/** What a doomed narinfo says: its path, its NAR, and what it refers to (hash parts). */
export interface DoomedInfo {
  readonly storePath?: string;
  readonly nar?: string;
  readonly references: string[];
}

/**
 * The store paths the sweep took (or would take), each with its NAR when that went too; the
 * narinfos deleted whose path is unknown (they did not parse); and the NARs deleted that no
 * doomed narinfo named (orphans).
 */
export function deletedPaths(
  inventory: CacheInventory,
  doomed: readonly CacheObject[],
  infos: ReadonlyMap<string, DoomedInfo>,
  narinfosGone: ReadonlySet<string>,
  narsGone: ReadonlySet<string>,
): { paths: DeletedPath[]; unreadable: string[]; orphans: string[] } {
  const paths: DeletedPath[] = [];
  const unreadable: string[] = [];
  const ofPaths = new Set<string>();
  for (const o of doomed) {
    const hash = o.key.slice(0, HASH_PART_LENGTH);
    if (!narinfosGone.has(hash)) continue;
    const info = infos.get(hash);
    if (info?.storePath === undefined) {
      unreadable.push(o.key);
      continue;
    }
    const nar = info.nar !== undefined && narsGone.has(info.nar) ? info.nar : null;
    if (nar !== null) ofPaths.add(nar);
    const narBytes = nar === null ? 0 : (inventory.nars.get(nar)?.size ?? 0);
    paths.push({ storePath: info.storePath, narinfo: o.key, nar, bytes: o.size + narBytes });
  }
  paths.sort((a, b) => a.storePath.localeCompare(b.storePath));
  const orphans = [...narsGone].filter((k) => !ofPaths.has(k)).sort();
  return { paths, unreadable: unreadable.sort(), orphans };
}

/**
 * A package's name as Nix's parseDrvName splits it: the store path's name up to the first
 * dash followed by something that is not a letter (`hello-2.12` → `hello`).
 */
export function packageName(storePath: string): string {
  const name = storePath.slice(STORE_DIR.length + 34);
  const at = name.search(/-[^a-zA-Z]/);
  return at <= 0 ? name : name.slice(0, at);
}

/** Deleted paths grouped by package name, the largest groups (by bytes) first. */
export function groupByPackage(
  paths: readonly DeletedPath[],
): { name: string; bytes: number; paths: string[] }[] {
  const groups = new Map<string, { name: string; bytes: number; paths: string[] }>();
  for (const p of paths) {
    const name = packageName(p.storePath);
    let g = groups.get(name);
    if (g === undefined) {
      g = { name, bytes: 0, paths: [] };
      groups.set(name, g);
    }
    g.bytes += p.bytes;
    g.paths.push(p.storePath);
  }
  for (const g of groups.values()) g.paths.sort();
  return [...groups.values()].sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name));
}

/**
 * What a collection counts and deletes: the cache's own objects (narinfos, NARs, listings and
 * delta skip notes); the objects the fleet's reader judges beside them (`SideObject`: secrets
 * bundles and release shards no kept release names); and what writers that died left in a
 * directory store (`leftover`: ObjectStore.removeLeftovers).
 */
export const OBJECT_KINDS = [
  "narinfo",
  "nar",
  "listing",
  "skip",
  "bundle",
  "shard",
  "leftover",
] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];
export type { Tally };

export type Tallies = Record<ObjectKind, Tally>;

export function emptyTallies(): Tallies {
  return Object.fromEntries(OBJECT_KINDS.map((k) => [k, { objects: 0, bytes: 0 }])) as Tallies;
}

/** The kinds of SideObject. */
export const SIDE_KINDS = ["bundle", "shard"] as const;

/**
 * An object beside the cache's own that only the fleet's reader can judge: a host's secrets
 * bundle (`secrets/HOST/SHA256`), named when a release the collection reads names it; a
 * release's shard (`release-shards/CHANNEL/SEQ/…`), named while its release file is there. One
 * not named goes once older than the grace period, as any object does.
 */
export interface SideObject {
  readonly kind: (typeof SIDE_KINDS)[number];
  readonly object: CacheObject;
  readonly named: boolean;
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
 * younger than that is a root of its own (the collector marks it), so it never shows here;
 * but for a delta the mark reached whose target it did not (`dropped`): a delta goes with its
 * target, whatever its age.
 */
export function doomedNarInfos(
  inventory: CacheInventory,
  marked: ReadonlySet<string>,
  cutoff: number,
  dropped: ReadonlySet<string> = new Set(),
): CacheObject[] {
  const doomed: CacheObject[] = [];
  for (const [hash, o] of inventory.narinfos) {
    if (!marked.has(hash) && (pastGrace(o, cutoff) || dropped.has(hash))) doomed.push(o);
  }
  return doomed;
}

/**
 * The mark, with the rule for deltas (docs/deltas.md): a delta is never a root, and is kept
 * exactly while the path whose hash part its name carries is. `reached` maps each hash part
 * the mark reached to its store path; `kept` is what stays of it (every path that is no delta,
 * and the deltas of those), `dropped` the deltas it reached whose target goes (a young delta,
 * made a root by its age alone).
 */
export function judgeMarkedDeltas(reached: ReadonlyMap<string, string>): {
  kept: Set<string>;
  dropped: Set<string>;
} {
  const paths = new Set<string>();
  const deltas: [string, string][] = [];
  for (const [hash, path] of reached) {
    const target = deltaTargetHashPart(path);
    if (target === undefined) paths.add(hash);
    else deltas.push([hash, target]);
  }
  const kept = new Set(paths);
  const dropped = new Set<string>();
  for (const [hash, target] of deltas) (paths.has(target) ? kept : dropped).add(hash);
  return { kept, dropped };
}

/**
 * Of the doomed narinfos (as read), the deltas whose target stays (`kept`): they are spared,
 * since a delta goes with its target, not when the mark misses it (no root names a delta).
 */
export function spareDeltas(
  doomed: readonly CacheObject[],
  infos: ReadonlyMap<string, DoomedInfo>,
  kept: ReadonlySet<string>,
): { doomed: CacheObject[]; spared: string[] } {
  const still: CacheObject[] = [];
  const spared: string[] = [];
  for (const o of doomed) {
    const hash = o.key.slice(0, HASH_PART_LENGTH);
    const path = infos.get(hash)?.storePath;
    const target = path === undefined ? undefined : deltaTargetHashPart(path);
    if (target !== undefined && kept.has(target)) spared.push(hash);
    else still.push(o);
  }
  return { doomed: still, spared };
}

/** The deltas' skip notes to delete: those whose target's narinfo is gone (or never was). */
export function doomedSkipNotes(
  inventory: CacheInventory,
  remaining: ReadonlySet<string>,
): CacheObject[] {
  const doomed: CacheObject[] = [];
  for (const [key, o] of inventory.deltaSkips) {
    const target = skipNoteTargetOf(key);
    if (target === undefined || !remaining.has(target)) doomed.push(o);
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
