// Which paths a host already has can be a delta's base for a path it lacks (docs/deltas.md,
// "Bases"): the same package name, at most DELTA_MAX_BASES, in one stated order, within the
// caps the host's script applies alike (delta-caps.ts). Pure.
import { parseDrvName } from "../nix/closure-diff.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { DELTA_MAX_BASES, DELTA_MAX_PATHS, DELTA_MAX_PER_NAME } from "./delta-caps.js";
import type { DeltaPair } from "./delta-publish.js";

/**
 * The bases of `target` among `hostClosure`: the paths whose package name (parseDrvName's,
 * the version aside) is the target's, not the target itself, at most DELTA_MAX_BASES, best
 * first: the same whole name (a rebuild), then the version that shares the longest prefix
 * with the target's, then the longest suffix (`-dev` with `-dev`), then by base name.
 */
export function deltaBasesOf(target: StorePath, hostClosure: readonly StorePath[]): StorePath[] {
  return basesFrom(target, byPackage(hostClosure));
}

/**
 * The (target, base) pairs for a host with `hostClosure` that lacks `missing`: each target's
 * bases (deltaBasesOf), for the first DELTA_MAX_PATHS targets in byte order, each pair once.
 * The host's script takes the same: its list of paths to fetch and its closure sorted, the
 * first DELTA_MAX_PATHS of the one, the first DELTA_MAX_PER_NAME of a name of the other. What
 * the host fetches is a subset of `missing`, so each target counted here is one it tries.
 */
export function deltaPairsFor(
  hostClosure: readonly StorePath[],
  missing: readonly StorePath[],
): DeltaPair[] {
  const packages = byPackage(hostClosure);
  const pairs: DeltaPair[] = [];
  const seen = new Set<string>();
  for (const target of inByteOrder(missing).slice(0, DELTA_MAX_PATHS)) {
    for (const base of basesFrom(target, packages)) {
      const id = pairId({ target, base });
      if (seen.has(id)) continue;
      seen.add(id);
      pairs.push({ target, base });
    }
  }
  return pairs;
}

/** A pair as one string, for sets and maps. */
export function pairId(pair: DeltaPair): string {
  return `${pair.target} ${pair.base}`;
}

interface Candidate {
  readonly path: StorePath;
  /** The path's name after the hash (`openssl-3.0.13-dev`). */
  readonly name: string;
  readonly baseName: string;
  readonly version: string;
}

/** Paths once each, in byte order (`LC_ALL=C sort -u`, as the host's script sorts them). */
function inByteOrder(paths: readonly StorePath[]): StorePath[] {
  return [...new Set(paths)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The closure's paths by package name, each path once: the first DELTA_MAX_PER_NAME of a name
 * in byte order (a bound on the host's memory, far above what a system holds of a name but
 * `source`).
 */
function byPackage(closure: readonly StorePath[]): Map<string, Candidate[]> {
  const packages = new Map<string, Candidate[]>();
  for (const path of inByteOrder(closure)) {
    const { name, baseName } = parseStorePath(path);
    const drv = parseDrvName(name);
    const list = packages.get(drv.name);
    const candidate = { path, name, baseName, version: drv.version };
    if (list === undefined) packages.set(drv.name, [candidate]);
    else if (list.length < DELTA_MAX_PER_NAME) list.push(candidate);
  }
  return packages;
}

function basesFrom(target: StorePath, packages: ReadonlyMap<string, Candidate[]>): StorePath[] {
  const { name } = parseStorePath(target);
  const drv = parseDrvName(name);
  const candidates = (packages.get(drv.name) ?? []).filter((c) => c.path !== target);
  const rank = (c: Candidate) => ({
    same: c.name === name ? 1 : 0,
    prefix: commonPrefix(c.version, drv.version),
    suffix: commonSuffix(c.version, drv.version),
  });
  return candidates
    .map((c) => ({ c, r: rank(c) }))
    .sort(
      (a, b) =>
        b.r.same - a.r.same ||
        b.r.prefix - a.r.prefix ||
        b.r.suffix - a.r.suffix ||
        (a.c.baseName < b.c.baseName ? -1 : a.c.baseName > b.c.baseName ? 1 : 0),
    )
    .slice(0, DELTA_MAX_BASES)
    .map(({ c }) => c.path);
}

function commonPrefix(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function commonSuffix(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[a.length - 1 - n] === b[b.length - 1 - n]) n++;
  return n;
}
