// What writers of a directory store leave when they die: a temp file beside the object it was
// to become (`.<name>.nixship-tmp-<hex>`), a compare-and-swap lock file (`.<name>.nixship-lock`)
// and a staging directory (fs-staging.ts). Those untouched since a cutoff are removed: a live
// writer touches its own all the time, and a lock is held for milliseconds.
import type { Dir } from "node:fs";
import { lstat, opendir, unlink } from "node:fs/promises";
import { join, relative } from "node:path";
import { removeStagingDir, STAGING_HOME, staleStagingDirs } from "./fs-staging.js";
import {
  LEFTOVERS_NAMED,
  type LeftoverOptions,
  type LeftoversRemoved,
  type Tally,
} from "./object-store.js";

/** tempBeside's and the compare-and-swap lock's names (fs-files.ts, fs-store.ts): `.NAME.…`. */
const TEMP_FILE = /^\..+\.nixship-(?:tmp-[0-9a-f]+|lock)$/;
/**
 * The youngest a leftover is taken to be: whatever the caller's cutoff (`cache gc --grace 0`),
 * a writer that holds no lease (an agent's record, a release refresh) may be at work on a temp
 * or lock file younger than this; no put lasts this long untouched.
 */
export const LEFTOVER_MIN_AGE_MS = 3600_000;
/** Entries looked at, at most, in one sweep: a store of a million NARs and its folders fits. */
export const LEFTOVER_SCAN_LIMIT = 5_000_000;
/** Folders deeper than this are not entered (keys have a few segments; a cycle cannot form). */
const MAX_DEPTH = 32;

/**
 * Removes (with `dryRun`, counts) the temp and lock files under `root` and the staging
 * directories in its staging home untouched since `before`, one directory open at a time
 * (streamed: a folder of a million entries costs no array of them). Links are never followed.
 */
export async function removeLeftovers(
  root: string,
  options: LeftoverOptions,
): Promise<LeftoversRemoved> {
  const before = Math.min(options.before, Date.now() - LEFTOVER_MIN_AGE_MS);
  const removed: Tally = { objects: 0, bytes: 0 };
  const young: Tally = { objects: 0, bytes: 0 };
  const problems: string[] = [];
  const paths: string[] = [];
  const count = (t: Tally, bytes: number, path?: string) => {
    t.objects++;
    t.bytes += bytes;
    if (path !== undefined && paths.length < LEFTOVERS_NAMED) paths.push(relative(root, path));
  };
  // An interrupt ends the sweep where it is: what was removed by then is counted.
  const stopped = () => options.signal?.aborted === true;
  for (const dir of await staleStagingDirs(root, before)) {
    if (stopped()) break;
    if (!options.dryRun) {
      const failed = await removeStagingDir(dir.path).then(
        () => undefined,
        (err: Error) => err.message,
      );
      if (failed !== undefined) {
        problems.push(`could not delete the staging directory ${dir.path}: ${failed}`);
        continue;
      }
    }
    count(removed, dir.bytes, dir.path);
  }
  let seen = 0;
  const folders: { path: string; depth: number }[] = [{ path: root, depth: 0 }];
  for (let folder = folders.pop(); folder !== undefined && !stopped(); folder = folders.pop()) {
    let handle: Dir;
    try {
      // Listed as a directory; not entered if it became a link since.
      if (folder.depth > 0 && !(await lstat(folder.path)).isDirectory()) continue;
      handle = await opendir(folder.path, { bufferSize: 256 });
    } catch (err) {
      problems.push(`${folder.path}: ${(err as Error).message}`);
      continue;
    }
    for await (const entry of handle) {
      if (++seen > LEFTOVER_SCAN_LIMIT || (seen % 4096 === 0 && stopped())) break;
      const path = join(folder.path, entry.name);
      if (entry.isDirectory()) {
        if (folder.depth === 0 && entry.name === STAGING_HOME) continue;
        if (folder.depth < MAX_DEPTH) folders.push({ path, depth: folder.depth + 1 });
        continue;
      }
      if (!entry.isFile() || !TEMP_FILE.test(entry.name)) continue;
      const st = await lstat(path).catch(() => undefined);
      if (st === undefined || !st.isFile()) continue;
      if (st.mtimeMs >= before) {
        count(young, st.size);
        continue;
      }
      if (!options.dryRun) {
        if (stopped()) break;
        const gone = await unlink(path).then(
          () => true,
          (err: NodeJS.ErrnoException) => {
            if (err.code === "ENOENT") return false;
            problems.push(`could not delete ${path}: ${err.message}`);
            return false;
          },
        );
        if (!gone) continue;
      }
      count(removed, st.size, path);
    }
    if (seen > LEFTOVER_SCAN_LIMIT) {
      problems.push(
        `stopped looking for leftovers after ${LEFTOVER_SCAN_LIMIT} entries of ${root}: any past them stay`,
      );
      break;
    }
  }
  if (stopped()) problems.push("interrupted: the leftovers past those counted stay");
  return { removed, young, paths, problems };
}
