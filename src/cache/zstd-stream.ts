// A zstd stream decompressed in-process (libzstd through zstd-napi's binding), bounded: it fails
// once its output passes `maxOutput` by more than one output buffer, however far a small input
// would expand (a zstd block of a few bytes can stand for 128 KiB). The slack leaves the first
// word to a caller's own limit at `maxOutput`, downstream, which sees each buffer as it comes. Reading a NAR this
// way starts no `zstd -d` and copies nothing through pipes: a delta's fast pass read each target
// and base through two such processes (docs/performance.md).
import { createRequire } from "node:module";
import { Transform, type TransformCallback } from "node:stream";
import type * as ZstdBinding from "zstd-napi/binding.js";
import { OperationError } from "../errors.js";

const binding = createRequire(import.meta.url)("zstd-napi/binding.js") as typeof ZstdBinding;

/** Bytes of output produced per call into libzstd (its recommended output size). */
const OUT_CHUNK = 128 * 1024;

export class ZstdDecompressStream extends Transform {
  readonly #context = new binding.DCtx();
  /** libzstd's hint after the last call: 0 once a frame is complete and flushed. */
  #pending = 0;
  #produced = 0;
  #sawInput = false;

  constructor(private readonly maxOutput: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (chunk.length > 0) this.#sawInput = true;
    try {
      this.#drain(chunk);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      // Each input was drained whole (#drain): a frame not complete by now was cut short.
      if (this.#pending !== 0 || !this.#sawInput) {
        throw failed(this.#sawInput ? "the data ends inside a frame" : "there is no data");
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /** Feeds `input` to libzstd and pushes all it gives back, while it gives a full buffer. */
  #drain(input: Buffer): void {
    let rest = input;
    for (;;) {
      const out = Buffer.allocUnsafe(OUT_CHUNK);
      let result: [number, number, number];
      try {
        result = this.#context.decompressStream(out, rest);
      } catch (err) {
        throw failed((err as Error).message);
      }
      const [pending, written, consumed] = result;
      // A call that had nothing to do (its input gone, a frame just ended) tells of the next.
      if (consumed === 0 && written === 0 && rest.length === 0) return;
      this.#pending = pending;
      rest = rest.subarray(consumed);
      if (written > 0) {
        this.#produced += written;
        if (this.#produced > this.maxOutput + OUT_CHUNK) {
          throw failed(`it decompresses to more than ${this.maxOutput} bytes`);
        }
        this.push(out.subarray(0, written));
      }
      // Done with this input once it is consumed and libzstd had no more to give.
      if (rest.length === 0 && written < out.length) return;
      if (consumed === 0 && written === 0) throw failed("libzstd made no progress");
    }
  }
}

function failed(why: string): OperationError {
  return new OperationError("compressor-failed", `zstd data is not valid: ${why}`);
}
