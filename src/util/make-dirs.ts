// `mkdir -p`, bounded: Node's own recursive mkdir loops for ever, at full CPU, where a parent
// exists but refuses a new entry with ENOENT (/proc, /sys), as `init --cache file:///proc/x`
// found. Each missing directory is made on its own, parent first, once: at most one mkdir per
// component of the path a round, and the refusal is the error (after three rounds, as a parent
// a concurrent delete removed is made again).
import { mkdir, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** Makes `dir` and every missing parent (each with `mode`, as mkdir's umask allows). */
export async function makeDirs(dir: string, mode?: number): Promise<void> {
  // A concurrent delete may remove a parent between its stat and the mkdir under it (a store
  // tidies the folders its deletes leave empty): look again, a few times.
  for (let round = 1; ; round++) {
    try {
      return await makeMissing(await missingDirs(resolve(dir)), mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || round === PARENT_VANISHED_ROUNDS) {
        throw err;
      }
    }
  }
}

const PARENT_VANISHED_ROUNDS = 3;

/** The directories from `dir` up that do not exist, deepest first. */
async function missingDirs(dir: string): Promise<string[]> {
  const missing: string[] = [];
  let at = dir;
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
      return missing;
    }
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) return missing;
    at = parent;
  }
}

async function makeMissing(missing: readonly string[], mode: number | undefined): Promise<void> {
  for (const path of [...missing].reverse()) {
    await mkdir(path, mode === undefined ? {} : { mode }).catch((err: NodeJS.ErrnoException) => {
      // Made meanwhile by another (a concurrent writer of the same store): as good.
      if (err.code !== "EEXIST") throw err;
    });
  }
}
