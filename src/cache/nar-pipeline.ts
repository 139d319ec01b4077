// Serialise one store path as a NAR, hash it, compress it as a stream and hash the result, in
// one pass: for the formats that stream (none, and xz or bzip2 through Debian's binaries). zstd
// and none are written in frames on worker threads instead (nar-pool.ts).
import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { OperationError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import { dumpChunks } from "../nix/nar-encode.js";
import { finishedWriting, writeDrained } from "../util/drained.js";
import { compressor } from "./compression.js";
import { HashingStream } from "./hashing.js";
import { checkNar, type Digest, FRAME_SIZE, type NarDigests } from "./nar-check.js";

export interface NarPipelineOptions {
  readonly compression: "none" | "xz" | "bzip2";
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

/** The NAR's sink closed before the NAR was written whole (its consumer gave up). */
const sinkClosed = (): Error =>
  new OperationError("nar-sink-closed", "the NAR's destination closed before it was fully written");

/** Writes the (compressed) NAR of `path` into `sink`, ends it, and returns both digests. */
export async function writeNar(
  path: string,
  sink: Writable,
  options: NarPipelineOptions,
): Promise<NarDigests> {
  if (options.compression !== "none") {
    return viaChildProcess(path, sink, { ...options, compression: options.compression });
  }
  const narHash = createHash("sha256");
  let narSize = 0;
  let nar: Digest;
  try {
    for (const chunk of dumpChunks(path, { chunkSize: FRAME_SIZE })) {
      narHash.update(chunk);
      narSize += chunk.length;
      options.onBytes?.(chunk.length);
      await writeDrained(sink, chunk, sinkClosed);
    }
    nar = { hash: new Sha256(narHash.digest()), size: narSize };
    if (options.expected) checkNar(options.label ?? path, nar, options.expected);
    sink.end();
    await finishedWriting(sink, sinkClosed);
  } catch (err) {
    // Without an error argument: the sink's consumer sees a premature close and fails, and
    // no unobserved 'error' event is raised.
    sink.destroy();
    throw err;
  }
  return { nar, file: nar };
}

async function viaChildProcess(
  path: string,
  sink: Writable,
  options: NarPipelineOptions & { readonly compression: "xz" | "bzip2" },
): Promise<NarDigests> {
  const narHasher = new HashingStream(options.onBytes);
  const fileHasher = new HashingStream();
  try {
    // The sink is left open: as on the uncompressed path, it is ended only after the check.
    await pipeline(
      Readable.from(dumpChunks(path, { chunkSize: FRAME_SIZE })),
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
    await finishedWriting(sink, sinkClosed);
    return { nar, file: fileHasher.digest() };
  } catch (err) {
    sink.destroy();
    throw err;
  }
}
