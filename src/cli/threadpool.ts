// Sizes libuv's thread pool before anything uses it. Every file system call of the cache
// (writes, renames, fsyncs) runs there; with the default of 4, a few slow fsyncs would hold
// up the rest.
import { availableParallelism } from "node:os";

process.env.UV_THREADPOOL_SIZE ??= String(Math.max(8, availableParallelism() * 3));
