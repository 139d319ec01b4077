// The deleting half of a cache collection: what each doomed narinfo refers to, their deletion
// referrers first in batches under the lock, and the second look at the narinfos before the NARs.
import { InputError, OperationError } from "../errors.js";
import { HASH_PART_LENGTH as HASH_PART, STORE_DIR } from "../nix/store-path.js";
import { deleteKeys } from "../store/helpers.js";
import { DELETE_BATCH, type ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import type { GcLock } from "./gc-lease.js";
import { type DoomedInfo, type ObjectKind, referrersFirst, type Tallies } from "./gc-plan.js";
import type { CacheObject } from "./inventory.js";
import { listRoot } from "./inventory.js";
import { readNarInfo } from "./read.js";

const STORE_PREFIX = STORE_DIR.length + 1;

/** What the sweep needs of the collection's options. */
export interface SweepOptions {
  readonly store: ObjectStore;
  readonly dryRun: boolean;
  readonly signal?: AbortSignal;
  /** Narinfos read at once (default 16). */
  readonly concurrency?: number;
  readonly onEvent?: (event: {
    readonly type: "deleting";
    readonly kind: ObjectKind;
    readonly done: number;
    readonly total: number;
  }) => void;
}

/**
 * The narinfos there after the sweep (a new LIST), and the NARs they name: the marked ones'
 * are known; one not seen before (put since the inventory, by a writer that holds no lease) is
 * read. In a dry run, the narinfos it would have deleted do not count.
 */
export async function secondLook(
  options: SweepOptions,
  marked: ReadonlyMap<string, string>,
  deleted: ReadonlySet<string>,
): Promise<{
  remaining: Set<string>;
  named: Set<string>;
  listCalls: number;
  reads: number;
  problems: string[];
}> {
  const { store } = options;
  const { narinfos: now, listCalls } = await listRoot(store);
  const remaining = new Set<string>();
  const named = new Set<string>();
  const unknown: string[] = [];
  for (const hash of now.keys()) {
    if (deleted.has(hash) && options.dryRun) continue;
    remaining.add(hash);
    const url = marked.get(hash);
    if (url !== undefined) named.add(url);
    else unknown.push(hash);
  }
  const problems: string[] = [];
  await mapLimit(unknown, options.concurrency ?? 16, async (hash) => {
    try {
      const info = await readNarInfo(store, hash);
      if (info !== undefined) named.add(info.url);
    } catch (err) {
      // A narinfo that is not one (its content refused) names no NAR Nix could fetch; say so.
      // One that could not be read (the store failed, timed out) may name any NAR: no NAR is
      // deleted on a guess, and the collection stops here.
      if (!(err instanceof InputError)) {
        throw new OperationError(
          "gc-second-look",
          `reading ${hash}.narinfo again before deleting NARs failed (${err instanceof Error ? err.message : String(err)}): no NAR was deleted`,
          {
            cause: err,
            hint: "the narinfos deleted so far had every reference kept; run 'nixship cache gc' again once the store answers",
          },
        );
      }
      problems.push(`${hash}.narinfo: ${err.message}`);
    }
  });
  return { remaining, named, listCalls, reads: unknown.length, problems };
}

/**
 * What each doomed narinfo refers to, read once each, so that they can be deleted referrers
 * first and the report can name them. One that does not read is taken to refer to nothing
 * (and said so).
 */
export async function doomedReferences(
  options: SweepOptions,
  doomed: readonly CacheObject[],
  problems: string[],
): Promise<Map<string, DoomedInfo>> {
  const infos = new Map<string, DoomedInfo>();
  await mapLimit(doomed, options.concurrency ?? 16, async (o) => {
    const hash = o.key.slice(0, HASH_PART);
    try {
      const info = await readNarInfo(options.store, hash);
      infos.set(hash, {
        ...(info !== undefined ? { storePath: info.storePath, nar: info.url } : {}),
        references: (info?.references ?? []).map((r) =>
          r.slice(STORE_PREFIX, STORE_PREFIX + HASH_PART),
        ),
      });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(`${o.key}: ${err.message} (deleted as garbage)`);
      infos.set(hash, { references: [] });
    }
  });
  return infos;
}

/**
 * Deletes the doomed narinfos referrers first, a layer at a time: a layer holds the narinfos no
 * remaining doomed one refers to, so however the collection ends (a SIGKILL between two
 * deletes), every narinfo left has its references. A narinfo that could not be deleted keeps
 * what it refers to.
 */
export async function sweepNarInfos(
  options: SweepOptions,
  lock: GcLock | undefined,
  doomed: readonly CacheObject[],
  references: ReadonlyMap<string, readonly string[]>,
  deleted: Tallies,
  problems: string[],
): Promise<{ deleted: Set<string>; requests: number }> {
  const byHash = new Map(doomed.map((o) => [o.key.slice(0, HASH_PART), o]));
  const layers = referrersFirst(byHash.keys(), references);
  const done = new Set<string>();
  let requests = 0;
  let offset = 0;
  for (let layer = layers.first(); layer.length > 0; ) {
    const objects = layer.map((h) => byHash.get(h) as CacheObject);
    const swept = await sweep(options, lock, "narinfo", objects, deleted, problems, {
      offset,
      total: doomed.length,
    });
    offset += objects.length;
    requests += swept.requests;
    for (const h of swept.deleted) done.add(h);
    layer = layers.next(layer.filter((h) => swept.deleted.has(h)));
  }
  return { deleted: done, requests };
}

/** Deletes the objects in batches of 1,000, checking the lock before each; a dry run counts. */
export async function sweep(
  options: SweepOptions,
  lock: GcLock | undefined,
  kind: ObjectKind,
  objects: readonly CacheObject[],
  deleted: Tallies,
  problems: string[],
  progress: { offset: number; total: number } = { offset: 0, total: objects.length },
): Promise<{ deleted: Set<string>; requests: number }> {
  const done = new Set<string>();
  let requests = 0;
  for (let i = 0; i < objects.length; i += DELETE_BATCH) {
    options.signal?.throwIfAborted();
    const batch = objects.slice(i, i + DELETE_BATCH);
    let failed = new Map<string, string>();
    if (lock !== undefined) {
      lock.check();
      const result = await deleteKeys(
        options.store,
        batch.map((o) => o.key),
      );
      requests += result.requests;
      failed = new Map(result.failed.map((f) => [f.key, f.message]));
    }
    for (const o of batch) {
      const why = failed.get(o.key);
      if (why !== undefined) {
        problems.push(`could not delete ${o.key}: ${why}`);
        continue;
      }
      deleted[kind].objects++;
      deleted[kind].bytes += o.size;
      done.add(kind === "narinfo" ? o.key.slice(0, HASH_PART) : o.key);
    }
    options.onEvent?.({
      type: "deleting",
      kind,
      done: progress.offset + Math.min(i + DELETE_BATCH, objects.length),
      total: progress.total,
    });
  }
  return { deleted: done, requests };
}
