// Computes a set of deltas for a fleet: every (target, base) pair once, however many hosts
// share it, several at a time within a budget of NAR bytes, with typed progress events and a
// tally at the end.
import { NixshipError } from "../errors.js";
import type { SecretKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { ByteBudget, mapLimit } from "../util/pool.js";
import { pairId } from "./delta-bases.js";
import {
  type DeltaOutcome,
  type DeltaPair,
  type PublishDeltaOptions,
  publishDelta,
} from "./delta-publish.js";
import { checkZstdPatchFrom } from "./delta-zstd.js";

/** Pairs computed at once, by default: each zstd -19 takes a core and a few hundred MB. */
export const DELTA_CONCURRENCY = 2;

/**
 * Pairs computed at once at a fast level, where a pair's reading, writing and publishing weigh
 * as much as zstd: bench:delta's fast pass over the mass rebuild's 41 pairs of 5-13 MB took 2.2
 * s at 2 at once, 2.0 at 3, 1.9 at 4, 1.75 at 6 (and less CPU).
 */
export const DELTA_FAST_CONCURRENCY = 6;

/**
 * The NAR bytes (base and target) of the pairs computed at once: zstd takes about two to three
 * times a pair's NARs in memory, and their files are on disk meanwhile. A larger pair runs alone.
 */
export const DELTA_NAR_BYTES_AT_ONCE = 1024 * 1024 * 1024;

export type DeltaEvent =
  | { readonly type: "delta-plan"; readonly pairs: number }
  | { readonly type: "delta-start"; readonly pair: DeltaPair }
  | { readonly type: "delta-done"; readonly outcome: DeltaOutcome }
  | {
      readonly type: "delta-failed";
      readonly pair: DeltaPair;
      readonly code: string;
      readonly message: string;
    };

export interface DeltaTally {
  readonly published: number;
  readonly skipped: number;
  readonly existing: number;
  readonly failed: number;
  /**
   * Of the published and skipped, those that replace what the cache held unbelieved: a delta
   * or skip note not signed by the fleet's keys, or a delta whose NAR did not match.
   */
  readonly replaced: number;
  /** Bytes of the deltas published, and of the compressed NARs they stand for. */
  readonly deltaBytes: number;
  readonly targetBytes: number;
}

export interface ComputeDeltasOptions extends PublishDeltaOptions {
  readonly concurrency?: number;
  readonly emit?: (event: DeltaEvent) => void;
}

/**
 * Publishes the delta of each pair of `pairs` (deduplicated). A pair that fails is reported
 * and the others go on (a host without its delta fetches the path whole); a zstd that cannot
 * compute deltas at all fails the whole call first, naming the fix.
 */
export async function computeDeltas(
  store: ObjectStore,
  key: SecretKey,
  pairs: readonly DeltaPair[],
  options: ComputeDeltasOptions = {},
): Promise<DeltaTally> {
  const unique = new Map<string, DeltaPair>();
  for (const pair of pairs) if (!unique.has(pairId(pair))) unique.set(pairId(pair), pair);
  const emit = options.emit ?? (() => {});
  emit({ type: "delta-plan", pairs: unique.size });
  if (unique.size > 0) await checkZstdPatchFrom(options.zstd);
  const tally = emptyTally();
  const budget = options.budget ?? new ByteBudget(DELTA_NAR_BYTES_AT_ONCE);
  await mapLimit([...unique.values()], options.concurrency ?? DELTA_CONCURRENCY, async (pair) => {
    // An interrupt ends the whole set: no new pair starts, and zstd stops (its output dropped).
    options.signal?.throwIfAborted();
    emit({ type: "delta-start", pair });
    let outcome: DeltaOutcome;
    try {
      outcome = await publishDelta(store, key, pair, { ...options, budget });
    } catch (err) {
      options.signal?.throwIfAborted();
      if (!(err instanceof NixshipError)) throw err;
      tally.failed++;
      emit({ type: "delta-failed", pair, code: err.code, message: err.message });
      return;
    }
    countOutcome(tally, outcome);
    emit({ type: "delta-done", outcome });
  });
  return tally;
}

/** A tally of no pair. */
export function emptyTally(): { -readonly [K in keyof DeltaTally]: DeltaTally[K] } {
  return {
    published: 0,
    skipped: 0,
    existing: 0,
    failed: 0,
    replaced: 0,
    deltaBytes: 0,
    targetBytes: 0,
  };
}

/** Adds one pair's outcome to `tally`. */
export function countOutcome(
  tally: { -readonly [K in keyof DeltaTally]: DeltaTally[K] },
  outcome: DeltaOutcome,
): void {
  tally[outcome.kind]++;
  if (outcome.kind !== "existing" && outcome.replaced !== undefined) tally.replaced++;
  if (outcome.kind === "published") {
    tally.deltaBytes += outcome.deltaBytes;
    tally.targetBytes += outcome.targetBytes;
  }
}
