// The closure of store paths as a cache describes it: their narinfos and, through each one's
// References, every narinfo they reach. The one walk behind fetch (resolveClosure), the
// garbage collector's mark and the plan's closure diff, so none of them needs the paths in a
// local store.
import { InputError } from "../errors.js";
import type { NarInfo } from "../nix/narinfo.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { hashPartOf, readNarInfo } from "./read.js";

export interface ClosureWalkOptions {
  /** Narinfos read at once (default 16). */
  readonly concurrency?: number;
  /**
   * Whether the cache holds the narinfo of this hash part, when the caller listed the cache
   * already: a path it does not hold is reported missing without a GET.
   */
  readonly holds?: (hashPart: string) => boolean;
  /** Called for each narinfo read, as it is read. */
  readonly onRead?: (info: NarInfo) => void;
  /** Stops the walk between rounds. */
  readonly signal?: AbortSignal;
  /**
   * Told of a narinfo whose content is refused (it does not parse, or describes another path),
   * which the walk then passes over; absent: such a narinfo fails the walk. With it, references
   * are followed by their hash parts (a narinfo names a path; its name is the referrer's word).
   */
  readonly onRefused?: (path: string, error: InputError) => void;
}

export interface ClosureWalk {
  /** By hash part: every narinfo of the closure the cache holds. */
  readonly found: Map<string, NarInfo>;
  /**
   * Paths of the closure (roots or references) whose narinfo the cache lacks, and those
   * `holds` turned away (a caller that bounds the walk through it tells the two apart).
   */
  readonly missing: string[];
  /** Narinfos read (one GET each). */
  readonly reads: number;
}

/**
 * Reads the closure of `roots` from the cache, breadth first, each narinfo once. A narinfo
 * that does not parse, or describes another path, fails the walk with its key named (unless
 * `onRefused` is given: then it is told and passed over).
 */
export async function walkClosure(
  store: ObjectStore,
  roots: Iterable<string>,
  options: ClosureWalkOptions = {},
): Promise<ClosureWalk> {
  const found = new Map<string, NarInfo>();
  const missing: string[] = [];
  const seen = new Set<string>();
  let reads = 0;
  let frontier: string[] = [];
  const { onRefused } = options;
  const reach = (path: string) => {
    const hash = hashPartOf(path);
    if (seen.has(hash)) return;
    seen.add(hash);
    if (options.holds !== undefined && !options.holds(hash)) missing.push(path);
    else frontier.push(onRefused === undefined ? path : hash);
  };
  const read = (path: string) =>
    onRefused === undefined
      ? readNarInfo(store, path)
      : readNarInfo(store, path).catch((err: unknown) => {
          if (!(err instanceof InputError)) throw err;
          onRefused(path, err);
          return null;
        });
  for (const root of roots) reach(root);
  while (frontier.length > 0) {
    options.signal?.throwIfAborted();
    const round = frontier;
    frontier = [];
    const infos = await mapLimit(round, options.concurrency ?? 16, read);
    reads += round.length;
    infos.forEach((info, i) => {
      if (info === null) return;
      if (info === undefined) {
        missing.push(round[i] as string);
        return;
      }
      found.set(hashPartOf(info.storePath), info);
      options.onRead?.(info);
      for (const ref of info.references) reach(ref);
    });
  }
  return { found, missing, reads };
}
