// Serialise one store path as a NAR, hash it, compress it and hash the result, in one pass.
// zstd runs in-process: each fixed-size NAR chunk becomes an independent zstd frame compressed
// on libuv's thread pool, and frames are written in order. A run of frames is one valid zstd
// stream (Nix 2.8 and `zstd -d` read it), and it spreads even one large NAR over every core
// with no child process and no pipe. xz goes through Debian's `xz` as a stream.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { availableParallelism } from "node:os";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import type { Compression } from "../nix/narinfo.js";
import { compressor, DEFAULT_LEVEL } from "./compression.js";
import { HashingStream } from "./hashing.js";
import { zstdCompress } from "./zstd.js";

/** Input bytes per zstd frame: ratio within ~0.5% of a single frame at level 3. */
export const FRAME_SIZE = 4 << 20;
/** Frames compressing at once for one path; bounds memory at about 2 × this × FRAME_SIZE. */
const FRAMES_IN_FLIGHT = 3;

export interface Digest {
  readonly hash: Sha256;
  readonly size: number;
}

export interface NarDigests {
  readonly nar: Digest;
  readonly file: Digest;
}

export interface NarPipelineOptions {
  readonly compression: Compression;
  readonly level?: number;
  /** Hears the NAR bytes serialised so far, for progress. */
  readonly onBytes?: (delta: number) => void;
  /**
   * The NAR digest Nix recorded. When given, a NAR that does not match it fails before the
   * sink is ended, so a sink that commits on end (an object store put) never commits it.
   */
  readonly expected?: Digest;
  /** How errors name the path (the store path, when `path` is where its files are). */
  readonly label?: string;
}

/** Writes the (compressed) NAR of `path` into `sink`, ends it, and returns both digests. */
/** Waits until `sink` wants more, failing if it is closed first (its consumer gave up). */
function drained(sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      sink.off("close", onClose);
      resolve();
    };
    const onClose = (): void => {
      sink.off("drain", onDrain);
      reject(
        new OperationError(
          "nar-sink-closed",
          "the NAR's destination closed before it was fully written",
        ),
      );
    };
    sink.once("drain", onDrain);
    sink.once("close", onClose);
  });
}

export class NarMismatchError extends OperationError {
  constructor(path: string, actual: Digest, expected: Digest) {
    super(
      "nar-hash-mismatch",
      `${path}: the NAR read from disk (${actual.hash}, ${actual.size} bytes) differs from what Nix recorded (${expected.hash}, ${expected.size} bytes)`,
      { hint: `the store path may be corrupted; check it with 'nix-store --verify-path ${path}'` },
    );
  }
}

function checkNar(path: string, actual: Digest, expected: Digest): void {
  if (!actual.hash.equals(expected.hash) || actual.size !== expected.size) {
    throw new NarMismatchError(path, actual, expected);
  }
}

export async function writeNar(
  path: string,
  sink: Writable,
  options: NarPipelineOptions,
): Promise<NarDigests> {
  if (options.compression === "xz" || options.compression === "bzip2") {
    return viaChildProcess(path, sink, { ...options, compression: options.compression });
  }
  const narHash = createHash("sha256");
  let narSize = 0;
  const fileHash = options.compression === "none" ? narHash : createHash("sha256");
  let fileSize = 0;
  const emit = async (bytes: Buffer): Promise<void> => {
    if (fileHash !== narHash) fileHash.update(bytes);
    fileSize += bytes.length;
    if (!sink.write(bytes)) await drained(sink);
  };
  const level = options.level ?? DEFAULT_LEVEL.zstd;
  const frames: Promise<Buffer>[] = [];
  let nar: Digest;
  try {
    for (const chunk of dumpChunks(path, FRAME_SIZE)) {
      narHash.update(chunk);
      narSize += chunk.length;
      options.onBytes?.(chunk.length);
      if (options.compression === "none") {
        await emit(chunk);
        continue;
      }
      const frame = zstdCompress(chunk, level);
      frame.catch(() => {});
      frames.push(frame);
      while (frames.length >= FRAMES_IN_FLIGHT)
        await emit(await (frames.shift() as Promise<Buffer>));
    }
    while (frames.length > 0) await emit(await (frames.shift() as Promise<Buffer>));
    nar = { hash: new Sha256(narHash.digest()), size: narSize };
    if (options.expected) checkNar(options.label ?? path, nar, options.expected);
    sink.end();
    await once(sink, "finish");
  } catch (err) {
    // Without an error argument: the sink's consumer sees a premature close and fails, and
    // no unobserved 'error' event is raised.
    sink.destroy();
    throw err;
  }
  const file = fileHash === narHash ? nar : { hash: new Sha256(fileHash.digest()), size: fileSize };
  return { nar, file };
}

async function viaChildProcess(
  path: string,
  sink: Writable,
  options: NarPipelineOptions & { readonly compression: "xz" | "bzip2" },
): Promise<NarDigests> {
  const narHasher = new HashingStream(options.onBytes);
  const fileHasher = new HashingStream();
  try {
    // The sink is left open: as on the in-process path, it is ended only after the check.
    await pipeline(
      Readable.from(dumpChunks(path, FRAME_SIZE)),
      narHasher,
      compressor(options.compression, {
        ...(options.level !== undefined ? { level: options.level } : {}),
        threads: availableParallelism(),
      }),
      fileHasher,
      sink,
      { end: false },
    );
    const nar = narHasher.digest();
    if (options.expected) checkNar(options.label ?? path, nar, options.expected);
    sink.end();
    await once(sink, "finish");
    return { nar, file: fileHasher.digest() };
  } catch (err) {
    sink.destroy();
    throw err;
  }
}
