// Garbage collection of a binary cache: keep the closures of the roots the caller reads (what
// the fleet runs, has released, can roll back to, and pins) and of every narinfo written within
// the grace period; delete the rest, narinfos before NARs.
//
// Why the cache stays whole however the collection ends, and why it never deletes what a
// nixship writer needs (see docs/cache-gc.md):
// - the lock first, then the roots: the roots are read once the collection lock is held and no
//   push or deploy holds a lease, so every writer either finished (its records and releases,
//   which root what it wrote, are read) or waits for the lock to go;
// - a root that cannot be read stops the collection before anything is deleted;
// - the mark is a closure, so a kept narinfo's references are kept;
// - narinfos go first, then only NARs that no narinfo names after a second look at the
//   narinfos (so a narinfo put since the listing keeps its NAR); a collection killed between
//   the two leaves NARs that nothing names, which the next one deletes;
// - nothing written within the grace period is deleted.
import { InterruptedError, NixshipError, OperationError } from "../errors.js";
import type { ObjectStore } from "../store/object-store.js";
import { onLastWord } from "../util/last-words.js";
import { walkClosure } from "./closure-walk.js";
import { type GcLock, type LeaseHolder, takeGcLock } from "./gc-lease.js";
import {
  addRoot,
  type DeletedPath,
  deletedPaths,
  doomedListings,
  doomedNarInfos,
  doomedNars,
  doomedSkipNotes,
  emptyTallies,
  type GcRoots,
  groupByPackage,
  judgeMarkedDeltas,
  type MalformedRoot,
  malformedRoots,
  monthlyCost,
  OBJECT_KINDS,
  type ObjectKind,
  pastGrace,
  type RootSource,
  type RootsRead,
  SIDE_KINDS,
  type SideObject,
  spareDeltas,
  type Tallies,
  tally,
  type UnreadableRoot,
  type UnreadRecord,
} from "./gc-plan.js";
import { keepGcReport } from "./gc-reports.js";
import { doomedReferences, secondLook, sweep, sweepNarInfos } from "./gc-sweep.js";
import { explainDryRun, type KeptRoot, type LetGo, type PathGone } from "./gc-why.js";
import { type CacheInventory, readInventory } from "./inventory.js";
import { hashPartOf } from "./read.js";

/**
 * The points before and between the collector's steps, in order (a test may run a deploy at
 * each): before the lock, then after the lock, the roots, the listing, the mark, the narinfos'
 * sweep and the second look (the NARs' sweep is last).
 */
export const GC_STEPS = [
  "begin",
  "locked",
  "roots-read",
  "listed",
  "marked",
  "narinfos-swept",
  "looked-again",
] as const;
export type GcStep = (typeof GC_STEPS)[number];

export interface GcOptions {
  readonly store: ObjectStore;
  /**
   * Reads what to keep, with where each root came from: called once the collection lock is
   * held (in a dry run, which takes no lock, at once).
   */
  readonly readRoots: () => Promise<RootsRead & { readonly letGo?: readonly LetGo[] }>;
  /** Nothing written within this many ms is deleted. */
  readonly graceMs: number;
  /** Narinfos written within this many ms are roots too (--keep-days); undefined: none. */
  readonly keepRecentMs?: number;
  readonly dryRun: boolean;
  /** How long to wait for pushes and deploys in progress (ms). */
  readonly waitMs: number;
  readonly pricePerGbMonth: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: GcEvent) => void;
  /** Narinfos read at once (default 16). */
  readonly concurrency?: number;
  /** The time the ages are judged at (default: now). */
  readonly now?: Date;
  /**
   * For tests: awaited at each point between two steps of the collector, so that a test can
   * run a whole deploy there (a hook, not a behaviour: the collection is the same without it).
   */
  readonly betweenSteps?: (step: GcStep) => Promise<void>;
}

export type GcEvent =
  | { readonly type: "waiting"; readonly holders: readonly LeaseHolder[] }
  | { readonly type: "listing"; readonly narinfos: number; readonly nars: number }
  | { readonly type: "marking"; readonly read: number }
  | {
      readonly type: "deleting";
      readonly kind: ObjectKind;
      readonly done: number;
      readonly total: number;
    };

/** A root the cache does not hold (pushed elsewhere, or collected by another tool). */
export interface MissingRoot {
  readonly path: string;
  readonly sources: readonly RootSource[];
}

export interface GcReport {
  readonly store: string;
  readonly dryRun: boolean;
  readonly roots: {
    readonly total: number;
    readonly bySource: Record<RootSource, number>;
    /** At most MISSING_SHOWN of them; `missingCount` counts them all. */
    readonly missing: readonly MissingRoot[];
    readonly missingCount: number;
  };
  /** Objects kept, by kind (after the collection). */
  readonly kept: Tallies;
  /** Objects deleted (or, in a dry run, that would be), by kind. */
  readonly deleted: Tallies;
  /** Objects younger than the grace period (never deleted, whatever roots them). */
  readonly young: number;
  readonly saved: {
    readonly bytes: number;
    readonly pricePerGbMonth: number;
    readonly perMonth: number;
  };
  /** Roots named as a store path whose narinfo describes another path (what it names is kept). */
  readonly malformedRoots: readonly MalformedRoot[];
  /** Roots that could not be read, collected without at the operator's word (--skip-roots). */
  readonly skippedRoots: readonly UnreadableRoot[];
  /** Releases every full reader refuses, with their error: they keep nothing. */
  readonly refusedReleases: readonly UnreadableRoot[];
  /** Hosts whose status record could not be read, with what was kept for them instead. */
  readonly unreadRecords: readonly UnreadRecord[];
  /** Every store path deleted (or that would be), and their package names. */
  readonly deletedPaths: readonly DeletedPath[];
  /** A dry run's why: each path of deletedPaths (in its order), and why it goes. */
  readonly whyDeleted?: readonly PathGone[];
  /** A dry run's roots named as store paths, each with what keeps it. */
  readonly keptRoots?: readonly KeptRoot[];
  readonly byPackage: readonly { name: string; bytes: number; paths: string[] }[];
  /** Narinfos deleted whose store path could not be read (they did not parse). */
  readonly deletedUnreadable: readonly string[];
  /** NARs deleted that no narinfo named (left by pushes that died, or by other tools). */
  readonly orphanNars: readonly string[];
  /**
   * The secrets bundles and release shards deleted (or that would be), by key, and the first
   * 100 leftovers, by their path from the store's root.
   */
  readonly deletedObjects: readonly DeletedObject[];
  /** Where this report is kept in the store (gc/reports/), or null (a dry run, or it failed). */
  readonly reportKey: string | null;
  /** Deletes that failed, and references the cache lacks (it was incomplete before). */
  readonly problems: readonly string[];
  readonly requests: { readonly list: number; readonly get: number; readonly delete: number };
  /** Seconds each step took: waiting for leases and the lock, reading roots, listing, marking, sweeping. */
  readonly seconds: {
    readonly lock: number;
    readonly roots: number;
    readonly list: number;
    readonly mark: number;
    readonly sweep: number;
  };
}

const MISSING_SHOWN = 20;
/** Where a store path's hash part starts: after "/nix/store/". */
const PROBLEMS_SHOWN = 50;
const UNREADABLE_SHOWN = 50;

/** Collects the cache's garbage; in a dry run, reports the same and changes nothing. */
export async function collectGarbage(options: GcOptions): Promise<GcReport> {
  const { store } = options;
  await options.betweenSteps?.("begin");
  const started = performance.now();
  let lock: GcLock | undefined;
  let forgetLock = () => {};
  const deleting: Deleting = { deleted: emptyTallies(), deletedObjects: [] };
  try {
    lock = options.dryRun
      ? undefined
      : await takeGcLock(store, {
          waitMs: options.waitMs,
          ...(options.signal ? { signal: options.signal } : {}),
          onWaitForLeases: (holders) => options.onEvent?.({ type: "waiting", holders }),
        });
    // A process made to stop at once (a second interrupt) removes the lock first, else every
    // push and deploy waits for it to lapse (60 minutes).
    const taken = lock;
    if (taken !== undefined) forgetLock = onLastWord(() => taken.release());
    const lockSeconds = (performance.now() - started) / 1000;
    await options.betweenSteps?.("locked");
    // Ages are judged by the store's clock, as leases and the lock are: a collector whose own
    // clock runs hours fast would take a push still within its grace for an old one.
    const now = options.now ?? (lock === undefined ? undefined : new Date(lock.storeTime));
    const report = await collect(
      now === undefined ? options : { ...options, now },
      lock,
      lockSeconds,
      deleting,
    );
    if (lock === undefined) return report;
    // Kept while the lock is held: two collections never prune each other's reports.
    const problems = [...report.problems];
    let reportKey: string | undefined;
    try {
      reportKey = await keepGcReport(store, report);
    } catch (err) {
      problems.push(`the report was not kept: ${messageOf(err)}`);
    }
    // A lock that could not be removed is said, not thrown over the report of what was done.
    const held = lock;
    lock = undefined;
    await held.release().catch((err: unknown) => {
      problems.push(
        `the lock (gc/lock.json) could not be removed: ${messageOf(err)}; pushes and deploys wait for it until it lapses, 60 minutes after it was put`,
      );
    });
    return { ...report, ...(reportKey === undefined ? {} : { reportKey }), problems };
  } catch (err) {
    // What it deleted before it stopped, interrupted or failed midway, is kept as a report.
    const interrupted = options.signal?.aborted === true;
    const kept =
      lock === undefined
        ? undefined
        : await keepInterrupted(store, deleting, interrupted ? undefined : messageOf(err));
    const counted = kept === undefined ? "" : `; what it deleted before is counted in ${kept}`;
    if (interrupted) {
      throw new InterruptedError(`cache gc of ${store.url}: interrupted${counted}`, {
        hint: "what was deleted left the cache whole; run it again to carry on",
        cause: err,
      });
    }
    if (kept !== undefined) {
      const known = err instanceof NixshipError ? err : undefined;
      throw new NixshipError(known?.code ?? "gc-failed", `${messageOf(err)}${counted}`, {
        hint: known?.hint ?? "what was deleted left the cache whole; run it again to carry on",
        exitCode: known?.exitCode ?? 1,
        cause: err,
      });
    }
    throw err;
  } finally {
    // (What failed is what is told; a lock not removed here lapses in 60 minutes.)
    await lock?.release().catch(() => {});
    forgetLock();
  }
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * An interrupted or failed collection's report (`failed`: why it failed), kept while its lock
 * is held: what it deleted, counted by kind (the paths are not listed), and the bundles, shards
 * and leftovers by name. Undefined: it deleted nothing, or the report could not be kept.
 */
async function keepInterrupted(
  store: ObjectStore,
  deleting: Deleting,
  failed?: string,
): Promise<string | undefined> {
  const { deleted, deletedObjects } = deleting;
  if (OBJECT_KINDS.every((kind) => deleted[kind].objects === 0)) return undefined;
  const report = {
    store: store.url,
    dryRun: false,
    interrupted: failed === undefined,
    ...(failed === undefined ? {} : { failed }),
    deleted,
    deletedObjects,
    problems: [
      `${failed === undefined ? "interrupted" : "failed"}: what was deleted before is counted by kind; the store paths are not listed`,
    ],
  };
  return keepGcReport(store, report).catch(() => undefined);
}

/** The roots could not all be read: nothing was deleted. */
export class RootsUnreadableError extends OperationError {
  constructor(
    store: string,
    readonly unreadable: readonly UnreadableRoot[],
  ) {
    const names = [...new Set(unreadable.map((u) => u.name))];
    const shown = unreadable.slice(0, UNREADABLE_SHOWN).map((u) => `  ${u.name}: ${u.problem}`);
    if (unreadable.length > UNREADABLE_SHOWN)
      shown.push(`  … and ${unreadable.length - UNREADABLE_SHOWN} more`);
    super(
      "gc-roots-unreadable",
      `cache gc of ${store}: nothing was deleted: ${unreadable.length} root source(s) could not be read, so what they keep is unknown:\n${shown.join("\n")}`,
      {
        hint: `repair or rewrite what could not be read (a deploy rewrites a host's record; a new release supersedes a broken one), or collect without it: ${names
          .slice(0, 5)
          .map((n) => `--skip-roots ${n}`)
          .join(" ")}${names.length > 5 ? " …" : ""}`,
      },
    );
  }
}

/** What a collection has deleted so far: what an interrupted one's report says. */
interface Deleting {
  readonly deleted: Tallies;
  readonly deletedObjects: { kind: "bundle" | "shard" | "leftover"; key: string }[];
}

/** A deleted object beside the cache's own, as the report names it. */
type DeletedObject = Deleting["deletedObjects"][number];

async function collect(
  options: GcOptions,
  lock: GcLock | undefined,
  lockSeconds: number,
  { deleted, deletedObjects }: Deleting,
): Promise<GcReport> {
  const { store, onEvent, signal } = options;
  const clock = stopwatch();
  const now = (options.now ?? new Date()).getTime();
  const cutoff = now - options.graceMs;
  const requests = { list: 0, get: 0, delete: 0 };
  const problems: string[] = [];
  const step = async (name: GcStep) => options.betweenSteps?.(name);

  const read = await options.readRoots();
  if (read.unreadable.length > 0) throw new RootsUnreadableError(store.url, read.unreadable);
  const rootsSeconds = clock();
  await step("roots-read");

  const inventory = await readInventory(store, (p) => onEvent?.({ type: "listing", ...p }));
  requests.list += inventory.listCalls;
  const listSeconds = clock();
  await step("listed");

  // Roots: the caller's, then every narinfo written within the grace period or --keep-days.
  const roots: GcRoots = new Map([...read.roots].map(([p, s]) => [p, new Set(s)]));
  const recentCutoff = options.keepRecentMs === undefined ? undefined : now - options.keepRecentMs;
  let young = 0;
  for (const [hash, o] of inventory.narinfos) {
    if (o.modified >= cutoff) {
      addRoot(roots, hash, "grace");
      young++;
    } else if (recentCutoff !== undefined && o.modified >= recentCutoff)
      addRoot(roots, hash, "recent");
  }

  // The mark starts from the roots' hash parts: what a hash names is kept even when the root
  // names it under another name (a malformed record), and reported below.
  const rootsByHash = new Map<string, string[]>();
  for (const path of roots.keys()) {
    const hash = hashPartOf(path);
    rootsByHash.set(hash, [...(rootsByHash.get(hash) ?? []), path]);
  }
  let marking = 0;
  const walk = await walkClosure(store, rootsByHash.keys(), {
    holds: (hash) => inventory.narinfos.has(hash),
    // Anyone who can write the bucket can put a narinfo that is junk, or that names a path
    // under another name: said, and passed over (it keeps nothing), never the end of every
    // collection.
    onRefused: (path, err) =>
      problems.push(`${path}.narinfo: ${err.message} (not followed: it keeps nothing it names)`),
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    ...(signal ? { signal } : {}),
    onRead: () => {
      marking++;
      if (marking % 100 === 0) onEvent?.({ type: "marking", read: marking });
    },
  });
  requests.get += walk.reads;
  const missing = missingRoots(roots, rootsByHash, walk.missing, problems);
  const malformed = malformedRoots(
    roots.keys(),
    (hash) => walk.found.get(hash)?.storePath,
    read.origins,
  );
  const markSeconds = clock();
  await step("marked");

  // Sweep narinfos (and their listings), then look again before any NAR goes. A delta is
  // kept exactly while its target is (docs/deltas.md): the mark drops the deltas it reached
  // (young ones) whose target goes, and spares the unmarked ones whose target stays.
  const reached = new Map([...walk.found].map(([h, info]) => [h, info.storePath as string]));
  const { kept: marked, dropped } = judgeMarkedDeltas(reached);
  const candidates = doomedNarInfos(inventory, marked, cutoff, dropped);
  const doomedInfos = await doomedReferences(options, candidates, problems);
  requests.get += candidates.length;
  const { doomed: narinfos, spared } = spareDeltas(candidates, doomedInfos, marked);
  const named = new Map<string, string>();
  for (const [hash, info] of walk.found) named.set(hash, info.url);
  for (const hash of spared) {
    const nar = doomedInfos.get(hash)?.nar;
    if (nar !== undefined) named.set(hash, nar);
  }
  const references = new Map([...doomedInfos].map(([h, d]) => [h, d.references]));
  const gone = await sweepNarInfos(options, lock, narinfos, references, deleted, problems);
  requests.delete += gone.requests;
  await step("narinfos-swept");

  const second = await secondLook(options, named, gone.deleted);
  requests.list += second.listCalls;
  requests.get += second.reads;
  problems.push(...second.problems);
  await step("looked-again");

  const listings = doomedListings(inventory, second.remaining, cutoff);
  requests.delete += (await sweep(options, lock, "listing", listings, deleted, problems)).requests;
  const skips = doomedSkipNotes(inventory, second.remaining);
  requests.delete += (await sweep(options, lock, "skip", skips, deleted, problems)).requests;
  const nars = doomedNars(inventory, second.named, cutoff);
  const narsGone = await sweep(options, lock, "nar", nars, deleted, problems);
  requests.delete += narsGone.requests;
  // Beside the cache's own: the secrets bundles and release shards nothing kept names, and what
  // writers that died left in a directory store.
  const side = read.sideObjects ?? [];
  for (const kind of SIDE_KINDS) {
    const doomed = side
      .filter((o) => o.kind === kind && !o.named && pastGrace(o.object, cutoff))
      .map((o) => o.object);
    const swept = await sweep(options, lock, kind, doomed, deleted, problems);
    requests.delete += swept.requests;
    for (const key of swept.deleted) deletedObjects.push({ kind, key });
  }
  lock?.check();
  const leftovers = await store.removeLeftovers?.({
    before: cutoff,
    dryRun: options.dryRun,
    ...(signal ? { signal } : {}),
  });
  if (leftovers !== undefined) {
    deleted.leftover = { ...leftovers.removed };
    for (const key of leftovers.paths) deletedObjects.push({ kind: "leftover", key });
    problems.push(...leftovers.problems);
  }
  // Interrupted during the sweep of leftovers: what it removed is counted above.
  signal?.throwIfAborted();

  const paths = deletedPaths(inventory, narinfos, doomedInfos, gone.deleted, narsGone.deleted);
  // A dry run says why each path goes and what keeps each root.
  const explained = options.dryRun
    ? explainDryRun(inventory, narinfos, doomedInfos, read, missing, paths.paths)
    : undefined;
  const kept = keptTallies(inventory, side, deleted);
  if (leftovers !== undefined) kept.leftover = { ...leftovers.young };
  for (const o of inventory.nars.values()) if (o.modified >= cutoff) young++;
  const savedBytes = OBJECT_KINDS.reduce((sum, kind) => sum + deleted[kind].bytes, 0);
  return {
    store: store.url,
    dryRun: options.dryRun,
    roots: {
      total: read.roots.size,
      bySource: countBySource(roots),
      missing: missing.slice(0, MISSING_SHOWN),
      missingCount: missing.length,
    },
    kept,
    deleted,
    young,
    saved: {
      bytes: savedBytes,
      pricePerGbMonth: options.pricePerGbMonth,
      perMonth: monthlyCost(savedBytes, options.pricePerGbMonth),
    },
    malformedRoots: malformed,
    skippedRoots: read.skipped,
    refusedReleases: read.refused ?? [],
    unreadRecords: read.unreadRecords ?? [],
    deletedPaths: paths.paths,
    ...(explained === undefined ? {} : { whyDeleted: explained.why, keptRoots: explained.kept }),
    byPackage: groupByPackage(paths.paths),
    deletedUnreadable: paths.unreadable,
    orphanNars: paths.orphans,
    deletedObjects,
    reportKey: null,
    problems:
      problems.length > PROBLEMS_SHOWN
        ? [...problems.slice(0, PROBLEMS_SHOWN), `… and ${problems.length - PROBLEMS_SHOWN} more`]
        : problems,
    requests,
    seconds: {
      lock: lockSeconds,
      roots: rootsSeconds,
      list: listSeconds,
      mark: markSeconds,
      sweep: clock(),
    },
  };
}

/** Seconds since the last call (or since it was made). */
function stopwatch(): () => number {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const seconds = (now - last) / 1000;
    last = now;
    return seconds;
  };
}

function missingRoots(
  roots: GcRoots,
  rootsByHash: ReadonlyMap<string, readonly string[]>,
  missing: readonly string[],
  problems: string[],
): MissingRoot[] {
  const out: MissingRoot[] = [];
  for (const reached of missing) {
    // A root was walked by its hash part; a reference by its path.
    const named = reached.startsWith("/") ? undefined : rootsByHash.get(reached);
    if (named !== undefined) {
      for (const path of named) out.push({ path, sources: [...(roots.get(path) ?? [])] });
    } else
      problems.push(
        `${reached} is referenced in the cache but not in it (the cache was incomplete before this collection)`,
      );
  }
  return out;
}

function countBySource(roots: GcRoots): Record<RootSource, number> {
  const counts = {} as Record<RootSource, number>;
  for (const sources of roots.values()) {
    for (const s of sources) counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}

function keptTallies(
  inventory: CacheInventory,
  side: readonly SideObject[],
  deleted: Tallies,
): Tallies {
  const all = emptyTallies();
  tally(all, "narinfo", inventory.narinfos.values());
  tally(all, "nar", inventory.nars.values());
  tally(all, "listing", inventory.listings.values());
  tally(all, "skip", inventory.deltaSkips.values());
  for (const kind of SIDE_KINDS) {
    tally(
      all,
      kind,
      side.filter((o) => o.kind === kind).map((o) => o.object),
    );
  }
  for (const kind of OBJECT_KINDS) {
    all[kind].objects -= deleted[kind].objects;
    all[kind].bytes -= deleted[kind].bytes;
  }
  return all;
}
