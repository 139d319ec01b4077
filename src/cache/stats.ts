// What a cache holds, in figures: paths, NAR and file bytes by compression, the largest
// closures, the deltas (docs/deltas.md), orphans, and narinfos no trusted key signed. One
// listing and one GET per narinfo.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { type Compression, checkNarInfoSignatures } from "../nix/narinfo.js";
import type { ObjectStore } from "../store/object-store.js";
import { detached } from "../util/detached.js";
import { mapLimit } from "../util/pool.js";
import { deltaTargetHashPart } from "./delta-path.js";
import { readInventory } from "./inventory.js";
import { hashPartOf, readNarInfo } from "./read.js";

export interface CompressionStats {
  paths: number;
  narBytes: number;
  fileBytes: number;
}

export interface ClosureSize {
  readonly path: string;
  readonly paths: number;
  readonly narBytes: number;
}

/** The deltas a cache holds: their store paths apart from the others. */
export interface DeltaStats {
  /**
   * Delta store paths whose NAR is stored (and that a trusted key signed, when keys are
   * given), and their NARs' stored bytes (stored as they are: delta.zst inside).
   */
  readonly paths: number;
  readonly bytes: number;
  /** The stored bytes of the targets those deltas stand for (those the cache holds). */
  readonly targetBytes: number;
  /** Pairs computed and not worth publishing (`delta/skip/`). */
  readonly skipNotes: { readonly objects: number; readonly bytes: number };
}

export interface CacheStats {
  readonly store: string;
  /** Store paths, NAR bytes, stored bytes and compressions: of every path but the deltas. */
  readonly paths: number;
  readonly narBytes: number;
  /** Bytes of the NAR files as stored (after compression). */
  readonly fileBytes: number;
  readonly byCompression: Partial<Record<Compression, CompressionStats>>;
  /** The largest closures of paths no other path refers to, largest first (at most `top`). */
  readonly largestClosures: readonly ClosureSize[];
  readonly deltas: DeltaStats;
  readonly orphans: {
    /** NARs no narinfo names (left by an interrupted push, or by a collection cut short). */
    readonly nars: { readonly objects: number; readonly bytes: number };
    /**
     * Narinfos whose NAR is not there (a broken cache: Nix fails to substitute them): the first
     * LISTED store paths, sorted; `narinfosCount` counts them all.
     */
    readonly narinfos: readonly string[];
    readonly narinfosCount: number;
  };
  /** Narinfos signed by no trusted key (undefined: no keys given, not checked). */
  readonly untrusted: readonly string[] | undefined;
  /** Narinfos that do not parse, and why. */
  readonly unreadable: readonly string[];
  readonly requests: { readonly list: number; readonly get: number };
}

interface Entry {
  readonly path: string;
  readonly narSize: number;
  readonly refs: readonly string[];
}

const LISTED = 50;

export interface StatsOptions {
  readonly trusted?: readonly PublicKey[];
  /** How many of the largest closures to report (default 10). */
  readonly top?: number;
  readonly concurrency?: number;
  readonly onProgress?: (read: number, total: number) => void;
}

export async function cacheStats(
  store: ObjectStore,
  options: StatsOptions = {},
): Promise<CacheStats> {
  const inventory = await readInventory(store);
  const hashes = [...inventory.narinfos.keys()];
  const entries = new Map<string, Entry>();
  const byCompression: Partial<Record<Compression, CompressionStats>> = {};
  const named = new Set<string>();
  const missingNar: string[] = [];
  const untrusted: string[] = [];
  const unreadable: string[] = [];
  let narBytes = 0;
  let read = 0;
  /** Each path's stored bytes, by hash part; each delta's target, by the delta's hash part. */
  const stored = new Map<string, number>();
  const deltaTargets = new Map<string, string>();
  const deltas = { paths: 0, bytes: 0 };
  await mapLimit(hashes, options.concurrency ?? 16, async (hash) => {
    let info: Awaited<ReturnType<typeof readNarInfo>>;
    try {
      info = await readNarInfo(store, hash);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      unreadable.push(`${hash}.narinfo: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    options.onProgress?.(++read, hashes.length);
    if (info === undefined) return; // deleted since the listing
    // A NAR file that several narinfos name (rebuilds with the same bytes) is stored once.
    const namedBefore = named.has(info.url);
    named.add(info.url);
    const nar = inventory.nars.get(info.url);
    if (nar === undefined) missingNar.push(info.storePath);
    const trusted =
      options.trusted === undefined || checkNarInfoSignatures(info, options.trusted).ok;
    if (!trusted) untrusted.push(info.storePath);
    const target = deltaTargetHashPart(info.storePath);
    if (target !== undefined) {
      // A delta counts when its NAR is stored, at its stored size, and (with keys given) when
      // a trusted key signed it: what a host can take, not what a narinfo claims.
      if (nar !== undefined && trusted) {
        deltas.paths++;
        deltas.bytes += nar.size;
        deltaTargets.set(hash, target);
      }
      return;
    }
    stored.set(hash, nar?.size ?? info.fileSize ?? 0);
    entries.set(hash, {
      path: info.storePath,
      narSize: info.narSize,
      // Hash parts of their own: a cut of each reference would keep the whole path alive.
      refs: info.references.map((r) => detached(hashPartOf(r))),
    });
    narBytes += info.narSize;
    const c = byCompression[info.compression] ?? { paths: 0, narBytes: 0, fileBytes: 0 };
    byCompression[info.compression] = c;
    c.paths++;
    c.narBytes += info.narSize;
    if (!namedBefore) c.fileBytes += nar?.size ?? info.fileSize ?? 0;
  });
  const orphanNars = { objects: 0, bytes: 0 };
  let fileBytes = 0;
  for (const [key, o] of inventory.nars) {
    if (!key.startsWith("delta/")) fileBytes += o.size;
    if (!named.has(key)) {
      orphanNars.objects++;
      orphanNars.bytes += o.size;
    }
  }
  return {
    store: store.url,
    paths: entries.size,
    narBytes,
    fileBytes,
    byCompression,
    largestClosures: largestClosures(entries, options.top ?? 10),
    deltas: {
      ...deltas,
      targetBytes: [...deltaTargets.values()].reduce((sum, t) => sum + (stored.get(t) ?? 0), 0),
      skipNotes: {
        objects: inventory.deltaSkips.size,
        bytes: [...inventory.deltaSkips.values()].reduce((sum, o) => sum + o.size, 0),
      },
    },
    orphans: {
      nars: orphanNars,
      narinfos: missingNar.sort().slice(0, LISTED),
      narinfosCount: missingNar.length,
    },
    untrusted: options.trusted === undefined ? undefined : untrusted.sort(),
    unreadable: unreadable.sort(),
    requests: { list: inventory.listCalls, get: hashes.length },
  };
}

/** The closures of the top-level paths (referred to by no other), largest first. */
export function largestClosures(entries: ReadonlyMap<string, Entry>, top: number): ClosureSize[] {
  const referred = new Set<string>();
  for (const [hash, e] of entries) for (const r of e.refs) if (r !== hash) referred.add(r);
  const sizes: ClosureSize[] = [];
  for (const [hash, e] of entries) {
    if (referred.has(hash)) continue;
    const seen = new Set<string>([hash]);
    const stack = [hash];
    let bytes = 0;
    let paths = 0;
    while (stack.length > 0) {
      const h = stack.pop() as string;
      const entry = entries.get(h);
      if (entry === undefined) continue;
      paths++;
      bytes += entry.narSize;
      for (const r of entry.refs) {
        if (!seen.has(r)) {
          seen.add(r);
          stack.push(r);
        }
      }
    }
    sizes.push({ path: e.path, paths, narBytes: bytes });
  }
  return sizes
    .sort((a, b) => b.narBytes - a.narBytes || a.path.localeCompare(b.path))
    .slice(0, top);
}
