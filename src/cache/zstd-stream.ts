// A zstd stream decompressed in-process (libzstd through zstd-napi's binding), bounded twice:
// it yields one output buffer at a time, as its reader takes them, so that memory stays small
// however far an input chunk expands (a zstd block of a few bytes can stand for 128 KiB); and
// it fails once its output passes `maxOutput` by more than one buffer (the slack leaves the first
// word to a caller's own limit at `maxOutput`, downstream, which sees each buffer as it comes).
// Reading a NAR this way starts no `zstd -d` and copies nothing through pipes: a delta's fast
// pass read each target and base through two such processes (docs/performance.md).
import { Duplex, Transform } from "node:stream";
import { OperationError } from "../errors.js";
import { binding } from "./zstd.js";

/** Bytes of output produced per call into libzstd (its recommended output size). */
const OUT_CHUNK = 128 * 1024;

/**
 * A duplex that decompresses the zstd stream written to it. It yields one output buffer at a
 * time, as its reader asks: however far an input chunk expands, no more than a buffer of it is
 * held before the reader has taken the last.
 */
export function zstdDecompressor(maxOutput: number): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    const context = new binding.DCtx();
    // libzstd's hint after the last call that did something: 0 once a frame is complete.
    let pending = 0;
    let produced = 0;
    let sawInput = false;
    for await (const chunk of source) {
      if (chunk.length > 0) sawInput = true;
      let rest = chunk;
      for (;;) {
        const out = Buffer.allocUnsafe(OUT_CHUNK);
        let result: [number, number, number];
        try {
          result = context.decompressStream(out, rest);
        } catch (err) {
          throw failed((err as Error).message);
        }
        const [hint, written, consumed] = result;
        // A call that had nothing to do (its input gone, a frame just ended) tells of the next.
        if (consumed === 0 && written === 0 && rest.length === 0) break;
        pending = hint;
        rest = rest.subarray(consumed);
        if (written > 0) {
          produced += written;
          if (produced > maxOutput + OUT_CHUNK) {
            throw failed(`it decompresses to more than ${maxOutput} bytes`);
          }
          yield out.subarray(0, written);
        }
        // Done with this input once it is consumed and libzstd had no more to give.
        if (rest.length === 0 && written < out.length) break;
        if (consumed === 0 && written === 0) throw failed("libzstd made no progress");
      }
    }
    // Each input was drained whole: a frame not complete by now was cut short.
    if (!sawInput) throw failed("there is no data");
    if (pending !== 0) throw failed("the data ends inside a frame");
  });
}

/**
 * A stream that passes zstd data on as it is, each chunk only once what it decompresses to has
 * been counted: past `maxOutput` bytes of that it fails with `error()` and passes no more, so
 * whoever decompresses what was passed gets at most `maxOutput` bytes. What is decompressed is
 * counted in one reused buffer and dropped.
 */
export function zstdOutputLimit(maxOutput: number, error: () => Error): Transform {
  const context = new binding.DCtx();
  const scratch = Buffer.allocUnsafe(OUT_CHUNK);
  let produced = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      let rest = chunk;
      for (;;) {
        let result: [number, number, number];
        try {
          result = context.decompressStream(scratch, rest);
        } catch (err) {
          done(failed((err as Error).message));
          return;
        }
        const [, written, consumed] = result;
        rest = rest.subarray(consumed);
        produced += written;
        if (produced > maxOutput) {
          done(error());
          return;
        }
        if (rest.length === 0 && written < scratch.length) break;
        if (consumed === 0 && written === 0) {
          done(failed("libzstd made no progress"));
          return;
        }
      }
      done(null, chunk);
    },
  });
}

function failed(why: string): OperationError {
  return new OperationError("compressor-failed", `zstd data is not valid: ${why}`);
}
