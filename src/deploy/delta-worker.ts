// A deploy's deltas, computed in the background while its rollout runs (docs/deltas.md, "In a
// deploy"): every pair once at a fast level, those that save the most bytes first; then the
// deltas that came out large, again at the best level, for the hosts of later waves. It never
// holds the rollout up: a wave asks what is still pending and waits only as delta-pace.ts
// allows. It ends by its deadline, or when the deploy stops it, its zstd runs killed and their
// temporary files removed.

import { availableParallelism } from "node:os";
import { pairId } from "../cache/delta-bases.js";
import {
  type ComputeDeltasOptions,
  computeDeltas,
  countOutcome,
  DELTA_FAST_CONCURRENCY,
  type DeltaEvent,
  type DeltaTally,
  emptyTally,
} from "../cache/delta-compute.js";
import type { DeltaOutcome, DeltaPair } from "../cache/delta-publish.js";
import { DELTA_ZSTD_FAST_LEVEL, deltaLevelFor } from "../cache/delta-zstd.js";
import { INLINE_NAR_BYTES, InlineNarWriter, NarPool, type NarWriter } from "../cache/nar-pool.js";
import { NixshipError } from "../errors.js";
import { type PlanDeltaPairs, rankDeltaPairs, targetSettled } from "../fleet/plan-deltas.js";
import type { PublicKey, SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { startDeadline } from "../util/deadline.js";
import { tenths } from "../util/tenths.js";
import type { DeployEvent } from "./events.js";

/** The longest a deploy's delta work runs, both passes: past it, it stops where it is. */
export const DELTA_WORK_DEADLINE_MS = 30 * 60_000;

/**
 * A delta of the fast pass larger than this share of its target's compressed NAR is computed
 * again at the best level (bench:delta: every mass-rebuild delta was at most 2.1% at level 3,
 * where level 19 gains nothing worth its CPU; no real update's was under 16%).
 */
export const DELTA_IMPROVE_ABOVE = 0.05;

/**
 * Targets up to this NAR size are computed at the best level at once: it costs little there
 * (level 19 takes about 1.2 CPU s a MiB), and a verdict of "not worth it" is final.
 */
export const DELTA_SMALL_NAR = 256 * 1024;

/**
 * How the fast pass computes a pair: at a fast level (the best at once for a small target), on
 * every core for a large one, and leaving no verdict on a delta not worth it at that level.
 */
export const FAST_PASS = {
  levelFor: (narSize: number): number =>
    narSize <= DELTA_SMALL_NAR ? deltaLevelFor(narSize) : DELTA_ZSTD_FAST_LEVEL,
  threads: "all",
  concurrency: DELTA_FAST_CONCURRENCY,
  // Not worth it at this level is no verdict yet: the second pass decides.
  unworthy: "leave",
} as const satisfies ComputeDeltasOptions;

/** Seconds between two `delta-progress` events while pairs are computed. */
const PROGRESS_EVERY = 1;

export interface DeltaWorkerInput {
  readonly cacheUrl: string;
  readonly key: SecretKey;
  /** The fleet's cache keys: only what they signed is believed (default: `key`'s public half). */
  readonly trusted?: readonly PublicKey[];
  readonly planned: PlanDeltaPairs;
  readonly emit: (event: DeployEvent) => void;
  /** The deploy's interrupt: the work stops with it. */
  readonly signal?: AbortSignal | undefined;
  /** Whether to compute large deltas again at the best level after the fast pass (default true). */
  readonly improve?: boolean;
  /** The whole work's deadline (default DELTA_WORK_DEADLINE_MS). */
  readonly deadlineMs?: number;
  /** The zstd CLI and the scratch directory (defaults: `zstd` on PATH, the system's tmpdir). */
  readonly zstd?: string;
  readonly tmpDir?: string;
}

export interface DeltaWorker {
  /** The largest NAR bytes one of `hosts` lacks whose deltas are not settled yet by the fast pass. */
  pendingBytes(hosts: readonly string[]): number;
  /** Whether a delta of some path `host` lacks is published (found or computed) by now. */
  hasDeltas(host: string): boolean;
  /** Resolves once no path of `hosts` is pending, the fast pass is over, or `ms` later. */
  settled(hosts: readonly string[], ms: number): Promise<void>;
  /** Resolves when the fast pass is over (every pair computed once, or the work stopped). */
  readonly firstPass: Promise<void>;
  /** The fast pass's tally; undefined when no delta could be computed at all, or before its end. */
  tally(): DeltaTally | undefined;
  /** No more improving: the hosts still to come have started. What runs of it is stopped. */
  stopImproving(): void;
  /** Stops all the work and resolves when nothing of it runs (and its files are removed). */
  stop(): Promise<void>;
}

/** An error as one line: its message, and its hint when it has one. */
function errorLine(err: NixshipError): string {
  return err.hint === undefined ? err.message : `${err.message} (${err.hint})`;
}

/** Starts computing `planned`'s pairs; the work runs until it is over or stopped. */
export function startDeltaWorker(input: DeltaWorkerInput): DeltaWorker {
  const { planned, emit } = input;
  const stopping = new AbortController();
  const improving = new AbortController();
  const deadline = startDeadline(input.deadlineMs ?? DELTA_WORK_DEADLINE_MS);
  const signal = AbortSignal.any([
    stopping.signal,
    deadline.signal,
    ...(input.signal === undefined ? [] : [input.signal]),
  ]);
  const started = performance.now();
  const tools = {
    ...(input.trusted ? { trusted: input.trusted } : {}),
    ...(input.zstd ? { zstd: input.zstd } : {}),
    ...(input.tmpDir ? { tmpDir: input.tmpDir } : {}),
    // A pair's paths from the deployer's store, where it holds them (delta-base.ts), dumped on
    // worker threads where they are enough bytes to pay for starting them.
    ...(planned.storeNars === undefined
      ? {}
      : {
          storeNar: (path: StorePath) => planned.storeNars?.get(path),
          narWriter: narWriterFor(planned.storeNars),
        }),
  };
  const seconds = () => tenths((performance.now() - started) / 1000);

  // What the fast pass found of each pair: a delta the hosts can take, or none.
  const states = new Map<string, "delta" | "none">();
  const stateOf = (pair: DeltaPair) => states.get(pairId(pair));
  const targets = hostTargets(planned);
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const listener of [...listeners]) listener();
  };
  let firstOver = false;
  let resolveFirst: () => void = () => {};
  const firstPass = new Promise<void>((resolve) => {
    resolveFirst = resolve;
  });
  const endFirst = () => {
    firstOver = true;
    resolveFirst();
    notify();
  };
  let firstTally: DeltaTally | undefined;

  const pendingOf = (host: string): number => {
    if (firstOver) return 0;
    let bytes = 0;
    for (const t of targets.get(host) ?? []) {
      if (!targetSettled(t.pairs, stateOf)) bytes += t.narSize;
    }
    return bytes;
  };

  const fastPass = async (store: ObjectStore): Promise<DeltaOutcome[]> => {
    const tally = emptyTally();
    const outcomes: DeltaOutcome[] = [];
    const total = planned.pairs.length;
    let done = 0;
    let told = started;
    const onEvent = (e: DeltaEvent) => {
      if (e.type !== "delta-done" && e.type !== "delta-failed") return;
      done++;
      if (e.type === "delta-done") {
        countOutcome(tally, e.outcome);
        outcomes.push(e.outcome);
        const has =
          e.outcome.kind === "published" ||
          (e.outcome.kind === "existing" && e.outcome.found === "delta");
        states.set(pairId(e.outcome.pair), has ? "delta" : "none");
      } else {
        tally.failed++;
        states.set(pairId(e.pair), "none");
      }
      notify();
      const now = performance.now();
      // A pair whose base the cache lacks (a host installed from an image nixship never
      // pushed) is counted, not told one by one: there may be a whole closure of them.
      const quiet = (e.type === "delta-done" || e.code === "delta-path-missing") && done < total;
      if (quiet && now - told < PROGRESS_EVERY * 1000) return;
      told = now;
      emit({
        type: "delta-progress",
        done,
        total,
        ...(e.type === "delta-failed" && e.code !== "delta-path-missing"
          ? { failed: { target: e.pair.target, base: e.pair.base, message: e.message } }
          : {}),
      });
    };
    try {
      await computeDeltas(store, input.key, rankDeltaPairs(planned), {
        signal,
        ...tools,
        ...FAST_PASS,
        emit: onEvent,
      });
    } catch (err) {
      if (signal.aborted) {
        firstTally = tally;
        emit({ type: "deltas-done", ...tally, seconds: seconds(), unfinished: total - done });
        return [];
      }
      if (!(err instanceof NixshipError)) throw err;
      const none = { ...emptyTally(), failed: total };
      emit({ type: "deltas-done", ...none, seconds: seconds(), error: errorLine(err) });
      return [];
    }
    firstTally = tally;
    emit({ type: "deltas-done", ...tally, seconds: seconds() });
    return outcomes;
  };

  const secondPass = async (store: ObjectStore, first: readonly DeltaOutcome[]) => {
    const again = first
      .flatMap((o) =>
        (o.kind === "published" &&
          o.level === DELTA_ZSTD_FAST_LEVEL &&
          o.deltaBytes > DELTA_IMPROVE_ABOVE * o.targetBytes) ||
        (o.kind === "skipped" && !o.noted)
          ? [o]
          : [],
      )
      .sort((a, b) => b.deltaBytes - a.deltaBytes);
    if (again.length === 0 || improving.signal.aborted) return;
    const begun = performance.now();
    const before = again.reduce((sum, o) => sum + (o.kind === "published" ? o.deltaBytes : 0), 0);
    let improved = 0;
    let after = before;
    let done = 0;
    emit({ type: "deltas-improve", pairs: again.length });
    let stopped = false;
    try {
      await computeDeltas(
        store,
        input.key,
        again.map((o) => o.pair),
        {
          signal: AbortSignal.any([signal, improving.signal]),
          ...tools,
          improve: true,
          emit: (e) => {
            if (e.type === "delta-failed") done++;
            if (e.type !== "delta-done") return;
            done++;
            const o = e.outcome;
            if (o.kind === "published") {
              improved++;
              after += o.deltaBytes - (o.improvedFrom ?? 0);
            }
          },
        },
      );
    } catch (err) {
      if (!signal.aborted && !improving.signal.aborted) throw err;
      stopped = true;
    }
    emit({
      type: "deltas-improved",
      pairs: again.length,
      done,
      improved,
      bytesBefore: before,
      bytesAfter: after,
      seconds: tenths((performance.now() - begun) / 1000),
      ...(stopped ? { stopped: true } : {}),
    });
  };

  emit({
    type: "deltas-start",
    pairs: planned.pairs.length,
    hosts: planned.hosts.length,
    unread: planned.unread,
  });
  const work = (async () => {
    try {
      const store = await openStore(input.cacheUrl);
      try {
        const first = await fastPass(store);
        endFirst();
        if (input.improve !== false && !signal.aborted) await secondPass(store, first);
      } finally {
        await store.close();
      }
    } finally {
      // Its worker threads, if any, end with the work.
      await tools.narWriter?.close();
    }
  })()
    .catch((err: unknown) => {
      // Background work: what went wrong is told, never thrown into the rollout.
      if (!firstOver) {
        emit({
          type: "deltas-done",
          ...emptyTally(),
          failed: planned.pairs.length,
          seconds: seconds(),
          error: err instanceof Error ? err.message : String(err),
        });
      }
    })
    .finally(() => {
      deadline.clear();
      endFirst();
    });

  return {
    pendingBytes: (hosts) => Math.max(0, ...hosts.map(pendingOf)),
    hasDeltas: (host) =>
      (targets.get(host) ?? []).some((t) => t.pairs.some((p) => stateOf(p) === "delta")),
    settled: (hosts, ms) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (hosts.every((h) => pendingOf(h) === 0)) finish();
        };
        const timer = setTimeout(() => finish(), ms);
        const finish = () => {
          clearTimeout(timer);
          listeners.delete(check);
          input.signal?.removeEventListener("abort", finish);
          resolve();
        };
        listeners.add(check);
        input.signal?.addEventListener("abort", finish, { once: true });
        check();
      }),
    firstPass,
    tally: () => firstTally,
    stopImproving: () => improving.abort(),
    stop: async () => {
      stopping.abort();
      await work;
    },
  };
}

/**
 * What dumps the pairs' paths held in the deployer's store: worker threads (NarPool, one a core,
 * at most one a NAR of the pairs computed at once) where those paths are more than
 * INLINE_NAR_BYTES in all (starting a worker costs about 0.13 CPU-s), else the main thread. The
 * threads start with the first path dumped: pairs the cache has deltas for already start none.
 */
export function narWriterFor(
  held: ReadonlyMap<StorePath, { readonly narSize: number }>,
): NarWriter {
  let bytes = 0;
  for (const { narSize } of held.values()) bytes += narSize;
  if (bytes <= INLINE_NAR_BYTES) return new InlineNarWriter();
  let pool: NarPool | undefined;
  return {
    write: (job, onBytes) => {
      pool ??= new NarPool(Math.min(availableParallelism(), 2 * DELTA_FAST_CONCURRENCY));
      return pool.write(job, onBytes);
    },
    close: async () => {
      await pool?.close();
    },
  };
}

/** Each host's targets: their NAR size and their pairs, in the host's order of bases. */
function hostTargets(
  planned: PlanDeltaPairs,
): Map<string, { readonly narSize: number; readonly pairs: DeltaPair[] }[]> {
  const shared = new WeakMap<object, { narSize: number; pairs: DeltaPair[] }[]>();
  const out = new Map<string, { narSize: number; pairs: DeltaPair[] }[]>();
  for (const host of planned.hosts) {
    let list = shared.get(host.lacking);
    if (list === undefined) {
      const byTarget = new Map<StorePath, DeltaPair[]>();
      for (const pair of host.pairs) {
        byTarget.set(pair.target, [...(byTarget.get(pair.target) ?? []), pair]);
      }
      list = host.lacking.flatMap((p) => {
        const pairs = byTarget.get(p.path);
        return pairs === undefined ? [] : [{ narSize: p.narSize, pairs }];
      });
      shared.set(host.lacking, list);
    }
    out.set(host.host, list);
  }
  return out;
}
