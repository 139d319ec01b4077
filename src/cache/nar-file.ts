// One store path to a NAR file, synchronously, in one pass: serialise, hash the NAR, and either
// write it as it is or compress each FRAME_SIZE chunk as an independent zstd frame, hashing what
// is written. A run of zstd frames is one valid zstd stream (Nix 2.8 and `zstd -d` read it).
// Runs on a push worker thread; the file goes into the store's staging directory.
import { createHash } from "node:crypto";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { OperationError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import { FRAME_SIZE, type NarDigests } from "./nar-check.js";
import type { ZstdFrameCompressor } from "./zstd.js";

/**
 * Writes the NAR of `path` (where the store path's files are) into the new file `out`, as zstd
 * frames from `compressor`, or uncompressed without one, and returns both digests (the same
 * one twice when uncompressed: the file is the NAR). A NAR that runs past `maxNarBytes` fails
 * (`nar-too-large`) as soon as it does. On failure `out` is removed.
 */
export function narFile(
  path: string,
  out: string,
  compressor: ZstdFrameCompressor | undefined,
  onBytes: (narBytes: number) => void = () => {},
  maxNarBytes = Number.POSITIVE_INFINITY,
): NarDigests {
  const narHash = createHash("sha256");
  const fileHash = compressor === undefined ? undefined : createHash("sha256");
  let narSize = 0;
  let fileSize = 0;
  const fd = openSync(out, "wx");
  try {
    for (const chunk of dumpChunks(path, { chunkSize: FRAME_SIZE, reuse: true })) {
      narSize += chunk.length;
      if (narSize > maxNarBytes) {
        throw new OperationError(
          "nar-too-large",
          `${path}: its NAR runs past the ${maxNarBytes} bytes it may have`,
        );
      }
      narHash.update(chunk);
      onBytes(chunk.length);
      const bytes = compressor === undefined ? chunk : compressor.compress(chunk);
      fileHash?.update(bytes);
      fileSize += bytes.length;
      for (let done = 0; done < bytes.length; ) {
        done += writeSync(fd, bytes, done, bytes.length - done);
      }
    }
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(out, { force: true });
    throw err;
  }
  const nar = { hash: new Sha256(narHash.digest()), size: narSize };
  return {
    nar,
    file: fileHash === undefined ? nar : { hash: new Sha256(fileHash.digest()), size: fileSize },
  };
}
