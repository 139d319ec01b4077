// What a plan expects a delta not computed yet to cost (docs/deltas.md, "What the views show"):
// a share of the target's compressed NAR, by how alike the pair's names are, from what
// `npm run bench:delta` measured (docs/performance.md, "Deltas"). An estimate, and the plan
// says so; a computed delta replaces it with its size. Pure.
import { DELTA_WORTH_RATIO } from "../cache/delta-path.js";
import type { DeltaPair } from "../cache/delta-publish.js";
import { parseStorePath } from "../nix/store-path.js";

/**
 * A rebuild (the same whole name: only the hashes of what it references changed): every such
 * delta measured was at most 2.1% of the target's zstd NAR; 5% leaves room.
 */
export const REBUILD_SHARE = 0.05;

/**
 * A version update (the same package, another version): real updates came to 18% of the zstd
 * NAR (their geometric mean at level 19), from 16% to 61%; 25% leans to the cautious side.
 */
export const UPDATE_SHARE = 0.25;

/** What a delta path holds beside its patch (delta-info, the target's narinfo): about 2 kB. */
export const DELTA_WRAPPER_BYTES = 2048;

/**
 * The bytes a host is expected to fetch for a target of `wholeBytes` (compressed) once the
 * delta of `pair` is computed: the target whole where the delta would not be worth publishing.
 */
export function estimatedDeltaBytes(pair: DeltaPair, wholeBytes: number): number {
  const rebuild = parseStorePath(pair.target).name === parseStorePath(pair.base).name;
  const bytes =
    Math.ceil((rebuild ? REBUILD_SHARE : UPDATE_SHARE) * wholeBytes) + DELTA_WRAPPER_BYTES;
  return bytes > DELTA_WORTH_RATIO * wholeBytes ? wholeBytes : bytes;
}
