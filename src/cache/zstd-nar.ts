// One store path to a zstd-compressed NAR file, synchronously, in one pass: serialise, hash the
// NAR, compress each FRAME_SIZE chunk as an independent frame, hash and write the frames. A
// run of frames is one valid zstd stream (Nix 2.8 and `zstd -d` read it). Runs on a push
// worker thread; the file goes into the store's staging directory, to be moved into place.
import { createHash } from "node:crypto";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import { FRAME_SIZE, type NarDigests } from "./nar-check.js";
import type { ZstdFrameCompressor } from "./zstd.js";

/**
 * Writes the zstd NAR of `path` (where the store path's files are) into the new file `out`
 * and returns both digests. On failure `out` is removed.
 */
export function zstdNarFile(
  path: string,
  out: string,
  compressor: ZstdFrameCompressor,
  onBytes: (narBytes: number) => void = () => {},
): NarDigests {
  const narHash = createHash("sha256");
  const fileHash = createHash("sha256");
  let narSize = 0;
  let fileSize = 0;
  const fd = openSync(out, "wx");
  try {
    for (const chunk of dumpChunks(path, { chunkSize: FRAME_SIZE, reuse: true })) {
      narHash.update(chunk);
      narSize += chunk.length;
      onBytes(chunk.length);
      const frame = compressor.compress(chunk);
      fileHash.update(frame);
      fileSize += frame.length;
      for (let done = 0; done < frame.length; ) {
        done += writeSync(fd, frame, done, frame.length - done);
      }
    }
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(out, { force: true });
    throw err;
  }
  return {
    nar: { hash: new Sha256(narHash.digest()), size: narSize },
    file: { hash: new Sha256(fileHash.digest()), size: fileSize },
  };
}
