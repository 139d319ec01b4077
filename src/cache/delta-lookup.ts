// What the cache already holds for a plan's delta pairs (docs/deltas.md): for each pair its
// published delta's size, a note that it was not worth one, or nothing yet; and the size each
// target is fetched at whole. A plan reads it to say what each host would fetch with deltas and
// without; nothing is computed or written.
import { InputError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import type { NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { pairId } from "./delta-bases.js";
import { deltaPathOf } from "./delta-path.js";
import type { DeltaPair } from "./delta-publish.js";
import { readSignedNarInfo, readSkipNote } from "./delta-trust.js";
import { readNarInfo } from "./read.js";

/** A pair as the cache has it: its delta path's bytes (what a host fetches), skipped, or none yet. */
export type PairState =
  | { readonly kind: "delta"; readonly bytes: number }
  | { readonly kind: "skip" }
  | { readonly kind: "pending" };

export interface DeltaLookup {
  /** By pairId. */
  readonly pairs: ReadonlyMap<string, PairState>;
  /** What each path asked costs fetched whole: its FileSize (NarSize when the narinfo has none). */
  readonly wholeBytes: ReadonlyMap<StorePath, number>;
}

/** Reads at once. */
const READS = 16;

/**
 * Looks up `pairs` and `paths` (what hosts lack, the pairs' targets among them) in `store`: one
 * narinfo read a pair (and a skip note's when it has no signed delta), one a path. A signed
 * skip note stands beside a refused delta; a delta or skip note no key of `trusted` signed is
 * otherwise pending: the deploy computes it again and replaces it. A path
 * the cache does not have yet (a plan before a push) has no whole size here; the caller counts
 * its NAR size.
 */
export async function lookupDeltas(
  store: ObjectStore,
  trusted: readonly PublicKey[],
  pairs: readonly DeltaPair[],
  paths: readonly StorePath[],
  signal?: AbortSignal,
): Promise<DeltaLookup> {
  const states = new Map<string, PairState>();
  await mapLimit(pairs, READS, async (pair) => {
    signal?.throwIfAborted();
    const delta = await readSignedNarInfo(store, deltaPathOf(pair.target, pair.base), trusted);
    if (delta?.kind === "signed") {
      states.set(pairId(pair), { kind: "delta", bytes: delta.info.fileSize ?? delta.info.narSize });
      return;
    }
    // A signed note outweighs a refused delta (delta-publish.ts's heldInCache).
    const note = await readSkipNote(store, pair, trusted);
    states.set(pairId(pair), note?.kind === "signed" ? { kind: "skip" } : { kind: "pending" });
  });
  const wholeBytes = new Map<StorePath, number>();
  await mapLimit([...new Set(paths)], READS, async (target) => {
    signal?.throwIfAborted();
    const info = await readWellFormed(store, target);
    if (info !== undefined && info !== "malformed") {
      wholeBytes.set(target, info.fileSize ?? info.narSize);
    }
  });
  return { pairs: states, wholeBytes };
}

/** A narinfo, none, or "malformed" (the plan counts that path whole, unknown in size). */
async function readWellFormed(
  store: ObjectStore,
  path: StorePath,
): Promise<NarInfo | undefined | "malformed"> {
  try {
    return await readNarInfo(store, path);
  } catch (err) {
    if (err instanceof InputError) return "malformed";
    throw err;
  }
}
