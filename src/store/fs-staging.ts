// The staging directories of a directory store: where deferred puts write their bodies until a
// flush moves them into place, under one reserved name, and removed by the next store once stale.
import { randomBytes } from "node:crypto";
import { rmdirSync, rmSync } from "node:fs";
import { lstat, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { OperationError } from "../errors.js";
import { makeDirs } from "../util/make-dirs.js";

/**
 * Where staging directories are made: a reserved name (`.nixship-tmp-<hex>`), so listings
 * never show it and no key can collide with it.
 */
export const STAGING_HOME = ".staging.nixship-tmp-0";
/**
 * A staging directory untouched for this long was left by a process that died (a live push
 * adds and moves files in its own all the time): the next one made removes it.
 */
export const STALE_STAGING_MS = 24 * 3600_000;
/** The most staging directories looked at per call. */
const STALE_SCAN_LIMIT = 1000;

/** Makes a new staging directory in the store at `root`, and removes stale ones beside it. */
export async function newStagingDir(root: string, url: string): Promise<string> {
  const parent = join(root, STAGING_HOME);
  const dir = join(parent, randomBytes(6).toString("hex"));
  try {
    await makeDirs(dir);
  } catch (err) {
    throw new OperationError(
      "store-fs-failed",
      `cannot create a staging directory in ${url}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  await removeStale(parent, dir);
  removedAtExit(dir);
  return dir;
}

/** The staging directories this process made: removed, if still there, when it exits. */
const made = new Set<string>();

/**
 * Removes `dir` when the process exits, however (a second interrupt exits at once): what it
 * holds is unfinished, and would wait STALE_STAGING_MS for another process to remove it.
 */
function removedAtExit(dir: string): void {
  if (made.size === 0) {
    process.once("exit", () => {
      for (const left of made) {
        rmSync(left, { recursive: true, force: true });
        // Their home too, once empty (it is not while another process stages in it).
        try {
          rmdirSync(dirname(left));
        } catch {}
      }
    });
  }
  made.add(dir);
}

/** Removes, best effort, the staging directories in `parent` but `keep` gone stale. */
async function removeStale(parent: string, keep: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  const now = Date.now();
  for (const name of names.slice(0, STALE_SCAN_LIMIT)) {
    const dir = join(parent, name);
    if (dir === keep) continue;
    const st = await lstat(dir).catch(() => undefined);
    if (st?.isDirectory() && now - st.mtimeMs > STALE_STAGING_MS) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
