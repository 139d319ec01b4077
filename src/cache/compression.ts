// Compression through Debian's own binaries, as streams: xz and bzip2 for pushing (zstd is
// compressed in-process, see nar-pipeline.ts) and for decompressing (zstd in-process too,
// zstd-stream.ts).
import { Duplex, PassThrough } from "node:stream";
import { OperationError } from "../errors.js";
import type { Compression } from "../nix/narinfo.js";
import { spawnOwned } from "../util/owned-children.js";
import { zstdDecompressor } from "./zstd-stream.js";

/** zstd level 3 is what Nix uses; xz level 6 is xz's and Nix's default. */
export const DEFAULT_LEVEL: Record<Compression, number> = { zstd: 3, xz: 6, bzip2: 9, none: 0 };

const COMMAND: Record<Exclude<Compression, "none">, string> = {
  zstd: "zstd",
  xz: "xz",
  bzip2: "bzip2",
};

export interface CompressOptions {
  readonly level?: number;
  /** Threads inside one xz compressor (zstd parallelises by frames instead). */
  readonly threads?: number;
}

function child(command: string, args: string[], what: string): Duplex {
  // Stopped when the process exits (a second interrupt, at once).
  const proc = spawnOwned(command, args);
  let stderr = "";
  proc.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr = (stderr + d).slice(-2000);
  });
  // The output ends only once the process exited cleanly: data that did not decompress must
  // fail the stream, not pass as a short (or empty) one.
  const output = new PassThrough();
  proc.stdout.pipe(output, { end: false });
  // A process that stops reading early (it found the data is not its format) makes writes to
  // its stdin fail with EPIPE; its exit status says what happened, so that failure is kept
  // from the stream, and what is still written is dropped.
  const input = new PassThrough();
  let inputRefused = false;
  input.pipe(proc.stdin);
  proc.stdin.on("error", () => {
    inputRefused = true;
    input.unpipe(proc.stdin);
    input.resume();
  });
  const duplex = Duplex.from({ writable: input, readable: output });
  proc.on("error", (err) => {
    duplex.destroy(
      new OperationError(
        "compressor-missing",
        `cannot run '${command}' to ${what}: ${err.message}`,
        {
          hint: `install it (Debian: apt-get install ${command === "xz" ? "xz-utils" : command})`,
        },
      ),
    );
  });
  proc.on("close", (code, signal) => {
    if (code === 0 && !inputRefused) output.end();
    else if (!duplex.destroyed) {
      const why = signal
        ? `was killed by ${signal}`
        : code === 0
          ? "stopped before the end of its input"
          : `exited with ${code}`;
      duplex.destroy(
        new OperationError(
          "compressor-failed",
          `'${command}' ${why} while trying to ${what}: ${stderr.trim()}`,
        ),
      );
    }
  });
  duplex.on("close", () => {
    if (proc.exitCode === null) proc.kill();
  });
  return duplex;
}

/** Compressors for the formats pushed through a child process (zstd runs in-process). */
export function compressor(kind: "xz" | "bzip2", options: CompressOptions = {}): Duplex {
  const level = options.level ?? DEFAULT_LEVEL[kind];
  const threads = Math.max(1, options.threads ?? 1);
  const args =
    kind === "xz" ? ["-q", "-c", `-${level}`, `-T${threads}`] : ["-q", "-c", `-${level}`];
  return child(COMMAND[kind], args, `compress with ${kind}`);
}

/**
 * A decompressor for `kind` whose output fails past `maxOutput` bytes (zstd, in-process) or is
 * cut by the caller's own limit downstream (xz and bzip2, child processes, whose pipes keep
 * what is held bounded).
 */
export function decompressor(kind: Compression, maxOutput: number): Duplex {
  if (kind === "none") return new PassThrough();
  if (kind === "zstd") return zstdDecompressor(maxOutput);
  return child(COMMAND[kind], ["-q", "-d", "-c"], `decompress ${kind}`);
}
