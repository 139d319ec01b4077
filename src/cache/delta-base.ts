// Where a delta's NARs come from (docs/deltas.md, "Bases"): the cache, checked against its signed
// narinfo as it is read; or the deployer's own store, where it holds the path, dumped on a
// worker thread and checked against the cache's narinfo, or, for a base the cache lacks, against
// the NarHash and NarSize the store recorded (the survey's). Either is cut at its size.
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { NixshipError, OperationError } from "../errors.js";
import type { Sha256 } from "../nix/hash.js";
import type { NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { untilAborted } from "../util/until-aborted.js";
import type { NarWriter } from "./nar-pool.js";
import { streamVerifiedNar } from "./read.js";

/** A pair's NAR (its base's, its target's): what it must be, and how it is written to a file. */
export interface DeltaNarSource {
  readonly info: { readonly narHash: Sha256; readonly narSize: number };
  write(file: string, signal: AbortSignal): Promise<void>;
}

/** The path as the cache holds it, its narinfo `info` (already found signed). */
export function cacheNarSource(store: ObjectStore, info: NarInfo): DeltaNarSource {
  return {
    info,
    write: async (file, signal) => {
      await streamVerifiedNar(store, info, createWriteStream(file), { signal });
    },
  };
}

/**
 * A pair's path (its `role`) dumped from the deployer's /nix/store by `writer` (on a worker
 * thread, where it has some), refused (`delta-base-changed`, `delta-target-changed`) unless its
 * NAR has `expected`'s hash and size: a copy that changed, or grew (stopped past the expected
 * size), gives no delta, and the path comes whole. `against` names what `expected` is.
 */
export function storeNarSource(
  path: StorePath,
  expected: { readonly narHash: Sha256; readonly narSize: number },
  writer: NarWriter,
  source: { readonly role: "base" | "target"; readonly against: string },
): DeltaNarSource {
  const { role, against } = source;
  return {
    info: expected,
    write: async (file, signal) => {
      signal.throwIfAborted();
      let nar: { readonly hash: Sha256; readonly size: number } | undefined;
      try {
        // A worker's job cannot be stopped: the pair's deadline or interrupt stops the wait.
        const job = writer.write({
          path,
          out: file,
          level: undefined,
          label: path,
          maxNarBytes: expected.narSize,
        });
        nar = (await untilAborted(job, signal)).nar;
      } catch (err) {
        if (!(err instanceof NixshipError) || err.code !== "nar-too-large") throw err;
      }
      signal.throwIfAborted();
      if (
        nar === undefined ||
        nar.size !== expected.narSize ||
        !nar.hash.equals(expected.narHash)
      ) {
        await rm(file, { force: true });
        const found =
          nar === undefined
            ? `its NAR runs past ${expected.narSize} bytes`
            : `its NAR is ${nar.size} bytes with ${nar.hash.toString()}`;
        throw new OperationError(
          `delta-${role}-changed`,
          `the delta's ${role} ${path} in the deployer's store is not what ${against} says: ${found}, where ${against} says ${expected.narSize} bytes with ${expected.narHash.toString()}`,
          { hint: "nix-store --verify --check-contents finds such a path; the path comes whole" },
        );
      }
    },
  };
}
