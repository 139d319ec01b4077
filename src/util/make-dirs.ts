// `mkdir -p`, bounded: Node's own recursive mkdir loops for ever, at full CPU, where a parent
// exists but refuses a new entry with ENOENT (/proc, /sys), as `init --cache file:///proc/x`
// found. Each missing directory is made on its own, parent first, once: at most one mkdir per
// component of the path, and the refusal is the error.
import { mkdir, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** Makes `dir` and every missing parent (each with `mode`, as mkdir's umask allows). */
export async function makeDirs(dir: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    const info = await stat(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (info !== undefined) {
      if (!info.isDirectory()) {
        throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${at}'`), {
          code: "ENOTDIR",
          path: at,
        });
      }
      break;
    }
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const path of missing.reverse()) {
    await mkdir(path, mode === undefined ? {} : { mode }).catch((err: NodeJS.ErrnoException) => {
      // Made meanwhile by another (a concurrent writer of the same store): as good.
      if (err.code !== "EEXIST") throw err;
    });
  }
}
