// The sorted children of the fs store's large directories, kept while a directory is unchanged,
// so that listings that enter one again (a poll every few seconds, a walk a page at a time) read
// and sort its entries once, not once per LIST: a stat says whether it changed since. What a
// page's objects are (size, etag, time) is kept with them: the store replaces an object by a
// rename into its directory, which changes the directory too. Of a directory larger than a run
// (CACHED_HEAD), the run kept is the one a walk is in: from its first child, or from where the
// walk read the directory last, so that a walk through a million children reads it once per
// run, not once per page.
import type { BigIntStats } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { compareKeys } from "./keys.js";
import type { ObjectInfo } from "./object-store.js";

/** A directory's child as a listing walks it: its key ("a/b" for a file, "a/b/" for a directory). */
export interface Child {
  readonly key: string;
  readonly dir: boolean;
}

/** A directory of fewer children is read again each time: reading it costs next to nothing. */
export const CACHED_DIR_CHILDREN = 1000;
/**
 * Children kept of one directory: a run of them in byte order (its first ones, or those after
 * where a walk is), past which it is read again.
 */
export const CACHED_HEAD = 200_000;
/**
 * Children and objects kept over all directories (about 100 and 200 bytes each); the least
 * recently used directory goes first.
 */
export const CACHED_CHILDREN = 400_000;
/** Objects kept of one directory: a page or two of a listing that keeps coming back. */
export const CACHED_OBJECTS = 2000;
/**
 * A directory changed this recently when it was read could change again within the same tick of
 * the file system's clock, unseen by a stat: it is not kept (git's "racily clean" files).
 */
const RACY_MS = 2000;

interface Kept {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  /**
   * A run of the children in byte order: from the first, or (`from` set) every child a walk
   * after `from` needs (those that sort after it, and a directory it is inside); up to the
   * last when `complete`.
   */
  readonly children: readonly Child[];
  readonly from: string | undefined;
  readonly complete: boolean;
  /** The objects of the directory that listings showed, by key. */
  readonly objects: Map<string, ObjectInfo>;
}

/** What the walks read from the disk: directories and their entries (the cache's own count). */
export interface DirReads {
  directories: number;
  entries: number;
}

export class DirCache {
  readonly reads: DirReads = { directories: 0, entries: 0 };
  readonly #root: string;
  /** By directory key ("" or "a/b/"), least recently used first. */
  readonly #kept = new Map<string, Kept>();
  #held = 0;

  /** A cache of the directories under `root`; `run`: the longest run kept of one (tests). */
  constructor(root: string, run: number = CACHED_HEAD) {
    this.#root = root;
    this.#run = run;
  }

  /** The longest run kept of one directory (default CACHED_HEAD). */
  readonly #run: number;

  /** The children kept of directory `dirKey`, if it has not changed since they were read. */
  async get(dirKey: string): Promise<Kept | undefined> {
    const kept = this.#kept.get(dirKey);
    if (kept === undefined) return undefined;
    const st = await stat(this.#path(dirKey), { bigint: true }).catch(() => undefined);
    this.#drop(dirKey, kept);
    if (st === undefined || !sameDirectory(kept, st)) return undefined;
    this.#kept.set(dirKey, kept);
    this.#held += held(kept);
    return kept;
  }

  /** Object `key` as a listing showed it, while its directory is kept. */
  object(key: string): ObjectInfo | undefined {
    return this.#kept.get(dirKeyOf(key))?.objects.get(key);
  }

  /** Keeps what an object is, while its directory is kept. */
  keepObject(info: ObjectInfo): void {
    const kept = this.#kept.get(dirKeyOf(info.key));
    if (kept === undefined || kept.objects.size >= CACHED_OBJECTS) return;
    if (this.#held >= CACHED_CHILDREN || kept.objects.has(info.key)) return;
    kept.objects.set(info.key, info);
    this.#held++;
  }

  /**
   * Whether directory `dirKey`, read since `started` (ms since the epoch), may be kept: it did
   * not change since shortly before then. Returns the stat to keep it with.
   */
  async settled(dirKey: string, started: number): Promise<BigIntStats | undefined> {
    const st = await stat(this.#path(dirKey), { bigint: true }).catch(() => undefined);
    const before = BigInt(started - RACY_MS) * 1_000_000n;
    return st !== undefined && st.ctimeNs < before && st.mtimeNs < before ? st : undefined;
  }

  /**
   * Keeps `children` (every child of `dirKey` a walk after `from` needs, sorted; undefined:
   * every child) with the stat `settled` gave: a run of them.
   */
  keep(
    dirKey: string,
    st: BigIntStats,
    children: readonly Child[],
    from: string | undefined,
  ): void {
    const old = this.#kept.get(dirKey);
    if (old !== undefined) this.#drop(dirKey, old);
    const complete = children.length <= this.#run;
    const head = complete ? children : children.slice(0, this.#run);
    for (const [p, k] of this.#kept) {
      if (this.#held + head.length <= CACHED_CHILDREN) break;
      this.#drop(p, k);
    }
    this.#kept.set(dirKey, {
      dev: st.dev,
      ino: st.ino,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      children: head,
      from,
      complete,
      objects: new Map(),
    });
    this.#held += head.length;
  }

  #drop(dirKey: string, kept: Kept): void {
    this.#kept.delete(dirKey);
    this.#held -= held(kept);
  }

  #path(dirKey: string): string {
    return dirKey === "" ? this.#root : join(this.#root, dirKey);
  }
}

/**
 * Whether `kept`'s run holds what a walk after `after` needs first: it starts at the first
 * child, or at or before `after`.
 */
export function covers(kept: Pick<Kept, "from">, after: string | undefined): boolean {
  if (kept.from === undefined) return true;
  return after !== undefined && compareKeys(after, kept.from) >= 0;
}

/** The key of the directory holding `key` ("" or "a/b/"). */
export function dirKeyOf(key: string): string {
  return key.slice(0, key.lastIndexOf("/") + 1);
}

const held = (kept: Kept) => kept.children.length + kept.objects.size;

/** Every change to a directory's entries moves its ctime and mtime; a new one has another inode. */
function sameDirectory(kept: Kept, st: BigIntStats): boolean {
  return (
    st.isDirectory() &&
    st.dev === kept.dev &&
    st.ino === kept.ino &&
    st.mtimeNs === kept.mtimeNs &&
    st.ctimeNs === kept.ctimeNs
  );
}
