// Reads what the plan's closure diffs need and makes them (fleet/plan-diffs.ts): the desired
// closures come from the local store (the survey has them), the running systems' closures from
// the fleet's cache, by the narinfos' References, so no old system has to be on the deployer.
// Only the paths the local store cannot describe are read, within a bound.
import { walkClosure } from "../cache/closure-walk.js";
import { hashPartOf } from "../cache/read.js";
import type { DeployPlan } from "../fleet/plan.js";
import {
  type CacheRead,
  type ClosureNode,
  closureReader,
  currentsToRead,
  type HostRead,
  type PlanDiffs,
  planDiffs,
  type ReadClosure,
  systemsToAsk,
} from "../fleet/plan-diffs.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";

/** Narinfos a plan reads at most for the running systems' closures (a GET each). */
export const MAX_DIFF_READS = 200_000;
/** Narinfos read at once. */
const DIFF_READ_CONCURRENCY = 32;

/** How the running closures were read from the cache: what the `diff-read` event says. */
export interface CacheReadReport {
  readonly narinfos: number;
  readonly seconds: number;
  /** The bound on the narinfos read. */
  readonly limit: number;
  /** Whether the bound stopped the walk before every closure was read. */
  readonly stopped: boolean;
}

export interface ClosureDiffOptions {
  /** The fleet's cache; undefined: only the local store is looked at. */
  readonly cacheUrl: string | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Told how the cache was read, when it was. */
  readonly onRead?: (read: CacheReadReport) => void;
  /** Default MAX_DIFF_READS. */
  readonly maxReads?: number;
  /** Opens the cache (default: `openStore`); for tests. */
  readonly open?: (url: string) => Promise<ObjectStore>;
  /**
   * Asks a host for the closure of the system it runs (a mode that can: ssh), for the systems
   * neither the local store nor the cache has; undefined: hosts are not asked.
   */
  readonly askHost?: (host: string, system: StorePath) => Promise<HostRead>;
}

/** Hosts asked at once for their closures. */
const ASK_CONCURRENCY = 8;

/**
 * The plan's diffs: each host that changes system, from the closure it runs to the one it
 * gets. `local` is the local store's metadata (the survey's: the desired closures, and the
 * running systems the deployer has too). A cache that cannot be read makes diffs unavailable,
 * never the plan; an interrupt still ends it.
 */
export async function closureDiffs(
  plan: Pick<DeployPlan, "hosts">,
  local: ReadonlyMap<StorePath, ClosureNode>,
  options: ClosureDiffOptions,
): Promise<PlanDiffs> {
  return (await readPlanClosures(plan, local, options)).diffs;
}

/** The plan's diffs, the closures they were made from (the deltas' bases read them too). */
export interface PlanClosures {
  readonly diffs: PlanDiffs;
  readonly closures: (root: StorePath) => ReadClosure;
  /** Whether the deployer can read `path` (the local store's metadata, or the cache's): a base. */
  readonly held: (path: StorePath) => boolean;
}

export async function readPlanClosures(
  plan: Pick<DeployPlan, "hosts">,
  local: ReadonlyMap<StorePath, ClosureNode>,
  options: ClosureDiffOptions,
): Promise<PlanClosures> {
  const roots = currentsToRead(plan.hosts, local);
  const cache: CacheRead =
    roots.length === 0
      ? { kind: "not-read", why: "not-needed" }
      : options.cacheUrl === undefined
        ? { kind: "not-read", why: "no-cache" }
        : await readCache(options.cacheUrl, roots, local, options);
  const diffs = planDiffs(plan.hosts, local, cache);
  const cached = cache.kind === "read" ? cache.nodes : undefined;
  const held = (path: StorePath) => local.has(path) || cached?.has(path) === true;
  const ask = options.askHost;
  const toAsk = ask === undefined ? [] : systemsToAsk(plan.hosts, diffs);
  if (ask === undefined || toAsk.length === 0) {
    return { diffs, closures: closureReader(local, cache), held };
  }
  const answers = await mapLimit(toAsk, ASK_CONCURRENCY, ({ host, system }) =>
    ask(host, system).catch((err: unknown): HostRead => {
      if (options.signal?.aborted) throw err;
      return { kind: "failed", reason: err instanceof Error ? err.message : String(err) };
    }),
  );
  const asked = new Map(toAsk.map(({ system }, i) => [system, answers[i] as HostRead]));
  return {
    diffs: planDiffs(plan.hosts, local, cache, asked),
    closures: closureReader(local, cache, asked),
    held,
  };
}

async function readCache(
  url: string,
  roots: readonly StorePath[],
  local: ReadonlyMap<StorePath, ClosureNode>,
  options: ClosureDiffOptions,
): Promise<CacheRead> {
  const started = performance.now();
  const limit = options.maxReads ?? MAX_DIFF_READS;
  const known = new Set([...local.keys()].map((p) => hashPartOf(p)));
  // The walk stops where `holds` says no: at paths the local store describes (most of a
  // running system's closure is in the desired one), and once the bound is reached.
  const beyondBound = new Set<string>();
  let asked = 0;
  const holds = (hash: string) => {
    if (known.has(hash)) return false;
    if (asked >= limit) {
      beyondBound.add(hash);
      return false;
    }
    asked++;
    return true;
  };
  let store: ObjectStore | undefined;
  try {
    store = await (options.open ?? openStore)(url);
    const walk = await walkClosure(store, roots, {
      concurrency: DIFF_READ_CONCURRENCY,
      holds,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const nodes = new Map<StorePath, ClosureNode>();
    for (const info of walk.found.values()) {
      nodes.set(info.storePath, {
        path: info.storePath,
        narSize: info.narSize,
        references: info.references,
      });
    }
    // What the walk calls missing but the cache was never asked for is not missing there.
    const missing = new Set(
      walk.missing.filter((p) => {
        const hash = hashPartOf(p);
        return !known.has(hash) && !beyondBound.has(hash);
      }) as StorePath[],
    );
    const stopped = beyondBound.size > 0;
    options.onRead?.({
      narinfos: walk.reads,
      seconds: (performance.now() - started) / 1000,
      limit,
      stopped,
    });
    return {
      kind: "read",
      nodes,
      missing,
      narinfosRead: walk.reads,
      ...(stopped ? { stoppedAt: limit } : {}),
    };
  } catch (err) {
    if (options.signal?.aborted) throw err;
    return { kind: "failed", reason: err instanceof Error ? err.message : String(err) };
  } finally {
    await store?.close();
  }
}
