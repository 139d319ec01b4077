// The staging directories of a directory store: where deferred puts write their bodies until a
// flush moves them into place, under one reserved name, and removed by the next store once stale.
import { randomBytes } from "node:crypto";
import { rmdirSync, rmSync } from "node:fs";
import { lstat, readdir, realpath, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
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
  // Never through a link: whoever can write the store's directory could aim it anywhere.
  const home = await lstat(parent).catch(() => undefined);
  if (home !== undefined && !home.isDirectory()) {
    throw new OperationError(
      "store-fs-failed",
      `cannot create a staging directory in ${url}: ${parent} is not a directory (a link, or a file): nixship does not follow it`,
      { hint: `remove ${parent}: nixship makes it again` },
    );
  }
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
  for (const dir of await staleIn(parent, Date.now() - STALE_STAGING_MS)) {
    if (dir.path !== keep) await removeStagingDir(dir.path).catch(() => undefined);
  }
}

/**
 * The staging directories of the store at `root` untouched since `before` (ms since the
 * epoch), the first STALE_SCAN_LIMIT looked at, with the bytes of the files they hold. A
 * staging home that is a link (or no directory) holds none: it is not followed.
 */
export function staleStagingDirs(
  root: string,
  before: number,
): Promise<{ path: string; bytes: number }[]> {
  return staleIn(join(root, STAGING_HOME), before);
}

/**
 * Removes a staging directory, and nothing a link leads to: it and its home are looked at
 * (lstat, then the real path) just before. Fails with the reason when it cannot.
 */
export async function removeStagingDir(dir: string): Promise<void> {
  const home = dirname(dir);
  const [homeStat, dirStat] = await Promise.all([lstat(home), lstat(dir)]);
  if (!homeStat.isDirectory() || !dirStat.isDirectory()) {
    throw new Error(`${dir} is no longer a directory in a real directory: not followed`);
  }
  if ((await realpath(dir)) !== join(await realpath(home), basename(dir))) {
    throw new Error(`${dir} leads elsewhere: not followed`);
  }
  await rm(dir, { recursive: true, force: true });
}

async function staleIn(parent: string, before: number): Promise<{ path: string; bytes: number }[]> {
  const home = await lstat(parent).catch(() => undefined);
  if (home === undefined || !home.isDirectory()) return [];
  const names = await readdir(parent).catch(() => [] as string[]);
  const stale: { path: string; bytes: number }[] = [];
  for (const name of names.slice(0, STALE_SCAN_LIMIT)) {
    const dir = join(parent, name);
    const st = await lstat(dir).catch(() => undefined);
    if (!st?.isDirectory() || st.mtimeMs >= before) continue;
    // A push's workers write their files straight into it: one level holds them all.
    const files = await readdir(dir, { withFileTypes: true }).catch(() => []);
    let bytes = 0;
    for (const f of files) {
      if (f.isFile()) bytes += (await lstat(join(dir, f.name)).catch(() => undefined))?.size ?? 0;
    }
    stale.push({ path: dir, bytes });
  }
  return stale;
}
