// A push worker thread: turns store paths into NAR files (nar-file.ts), zstd or uncompressed,
// one at a time, with this thread's compressor for the level (zstd.ts). Spoken to only by
// nar-pool.ts.
import { parentPort } from "node:worker_threads";
import { NixshipError } from "../errors.js";
import { narFile } from "./nar-file.js";
import { compressorFor } from "./zstd.js";

export interface WorkerRequest {
  readonly id: number;
  /** The zstd level, or undefined: the NAR is written uncompressed. */
  readonly level: number | undefined;
  /** Where the store path's files are. */
  readonly path: string;
  /** The new file to write the compressed NAR into. */
  readonly out: string;
  /** The most bytes the NAR may have (none: no bound). */
  readonly maxNarBytes?: number;
}

interface WireDigest {
  readonly hash: Uint8Array;
  readonly size: number;
}

/** An error as plain data; the pool turns it back into a NixshipError. */
export interface WireError {
  readonly message: string;
  readonly code?: string;
  readonly hint?: string;
  readonly exitCode?: number;
}

export type WorkerReply =
  | { readonly id: number; readonly type: "bytes"; readonly narBytes: number }
  | {
      readonly id: number;
      readonly type: "done";
      readonly nar: WireDigest;
      readonly file: WireDigest;
    }
  | { readonly id: number; readonly type: "failed"; readonly error: WireError };

const port = parentPort;
if (port === null) throw new Error("nar-worker.ts runs only as a worker thread");

port.on("message", ({ id, level, path, out, maxNarBytes }: WorkerRequest) => {
  const reply = (message: WorkerReply): void => port.postMessage(message);
  try {
    const compressor = level === undefined ? undefined : compressorFor(level);
    const digests = narFile(
      path,
      out,
      compressor,
      (narBytes) => reply({ id, type: "bytes", narBytes }),
      maxNarBytes,
    );
    const wire = (d: { hash: { bytes: Uint8Array }; size: number }): WireDigest => ({
      hash: d.hash.bytes,
      size: d.size,
    });
    reply({ id, type: "done", nar: wire(digests.nar), file: wire(digests.file) });
  } catch (err) {
    reply({ id, type: "failed", error: toWire(err) });
  }
});

function toWire(err: unknown): WireError {
  if (err instanceof NixshipError) {
    return {
      message: err.message,
      code: err.code,
      exitCode: err.exitCode,
      ...(err.hint ? { hint: err.hint } : {}),
    };
  }
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  return {
    message: err instanceof Error ? err.message : String(err),
    ...(errno ? { code: errno } : {}),
  };
}
