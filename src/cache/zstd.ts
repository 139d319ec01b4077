// zstd frames from libzstd through zstd-napi's native binding (built from the libzstd sources
// it ships, at install). The calls are synchronous: push runs them on worker threads, each
// with its own reused context and output buffer, so no frame is copied or allocated twice.
import { createRequire } from "node:module";
import type * as ZstdBinding from "zstd-napi/binding.js";

/** libzstd through zstd-napi's binding, loaded once for this module and zstd-stream.ts. */
export const binding = createRequire(import.meta.url)("zstd-napi/binding.js") as typeof ZstdBinding;

export class ZstdFrameCompressor {
  readonly #context = new binding.CCtx();
  #out: Buffer = Buffer.alloc(0);

  constructor(readonly level: number) {}

  /** `input` as one complete zstd frame. The result is a view, valid until the next call. */
  compress(input: Uint8Array): Buffer {
    const bound = binding.compressBound(input.length);
    if (this.#out.length < bound) this.#out = Buffer.allocUnsafeSlow(bound);
    const written = this.#context.compress(this.#out, input, this.level);
    return this.#out.subarray(0, written);
  }
}

/** This thread's compressor for `level`, made once and reused for every frame. */
const compressors = new Map<number, ZstdFrameCompressor>();
export function compressorFor(level: number): ZstdFrameCompressor {
  let compressor = compressors.get(level);
  if (compressor === undefined) {
    compressor = new ZstdFrameCompressor(level);
    compressors.set(level, compressor);
  }
  return compressor;
}
