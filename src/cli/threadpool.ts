// Sizes libuv's thread pool before anything uses it. zstd frames, file writes and fsyncs all
// run there; with the default of 4, a few slow fsyncs would leave the CPUs idle.
import { availableParallelism } from "node:os";

process.env.UV_THREADPOOL_SIZE ??= String(Math.max(8, availableParallelism() * 3));
