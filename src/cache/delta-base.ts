// Where a delta's base NAR comes from (docs/deltas.md, "Bases"): the cache, checked against its
// signed narinfo as it is read; or, for a base the cache lacks, the deployer's own store, checked
// against the NarHash and NarSize the store recorded (the survey's). Either is cut at its size.
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import type { Sha256 } from "../nix/hash.js";
import { dumpPathStream } from "../nix/nar-encode.js";
import type { NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { storedNarBound } from "./delta-limits.js";
import { HashingStream } from "./hashing.js";
import { streamVerifiedNar } from "./read.js";

/** A base's NAR: what it must be, and how it is written to a file. */
export interface BaseSource {
  readonly info: { readonly narHash: Sha256; readonly narSize: number };
  write(file: string, signal: AbortSignal): Promise<void>;
}

/** The base as the cache holds it, its narinfo `info` (already found signed). */
export function cacheBaseSource(store: ObjectStore, info: NarInfo): BaseSource {
  return {
    info,
    write: async (file, signal) => {
      await streamVerifiedNar(store, info, createWriteStream(file), {
        signal,
        maxFileBytes: storedNarBound(info.narSize),
      });
    },
  };
}

/**
 * The base dumped from the deployer's /nix/store, refused (`delta-base-changed`) unless its NAR
 * has the hash and size the store `recorded`: a copy that changed, or grew (cut one byte past
 * the recorded size), gives no delta, and the path comes whole.
 */
export function storeBaseSource(
  path: StorePath,
  recorded: { readonly narHash: Sha256; readonly narSize: number },
): BaseSource {
  return {
    info: recorded,
    write: async (file, signal) => {
      const hasher = new HashingStream();
      const cut = async function* (source: AsyncIterable<Buffer>) {
        let left = recorded.narSize + 1;
        for await (const chunk of source) {
          yield chunk.subarray(0, left);
          left -= Math.min(left, chunk.length);
          if (left === 0) return;
        }
      };
      await pipeline(dumpPathStream(path), cut, hasher, createWriteStream(file), { signal });
      const nar = hasher.digest();
      if (nar.size !== recorded.narSize || !nar.hash.equals(recorded.narHash)) {
        throw new OperationError(
          "delta-base-changed",
          `the delta's base ${path} in the deployer's store is not what the store recorded: its NAR is ${nar.size} bytes with ${nar.hash.toString()}, the store says ${recorded.narSize} with ${recorded.narHash.toString()}`,
          { hint: "nix-store --verify --check-contents finds such a path; the path comes whole" },
        );
      }
    },
  };
}
