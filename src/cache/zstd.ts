// The in-process zstd compressor. The package's own wrapper (`@mongodb-js/zstd` index.js)
// drops the level argument and always compresses at level 3, so the native binding it wraps
// is called directly.
import { createRequire } from "node:module";

interface ZstdBinding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
}

const binding = createRequire(import.meta.url)("@mongodb-js/zstd/bindings.js") as ZstdBinding;

/** Compresses `data` as one zstd frame at `level` (1-19), on libuv's thread pool. */
export function zstdCompress(data: Buffer, level: number): Promise<Buffer> {
  return binding.compress(data, level);
}
