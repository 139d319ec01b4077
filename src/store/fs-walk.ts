// Lists the fs store's keys in ascending UTF-8 byte order (S3's order) by walking only the
// directories that can hold them, and skipping whole subtrees that sort before the page token;
// a large directory's sorted children are read once while it is unchanged (fs-dir-cache.ts).
import type { Dirent } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { CACHED_DIR_CHILDREN, type Child, covers, type DirCache } from "./fs-dir-cache.js";
import { compareKeys, isReservedSegment, keyProblem } from "./keys.js";

/**
 * Keys under `dirKey` ("" or "a/b/") whose next segment starts with `namePrefix`, after `after`,
 * in order, a run at a time. Temp and lock files, symlinks and names that are not valid keys are never yielded. With `dirs`,
 * a large directory's sorted children are taken from there while it is unchanged, and kept there
 * when it is read.
 */
export async function* walkKeys(
  root: string,
  dirKey: string,
  namePrefix: string,
  after?: string,
  dirs?: DirCache,
): AsyncGenerator<string[]> {
  const path = join(root, dirKey);
  // Children up to this one were walked from those kept: the rest come from the directory.
  let past: string | undefined;
  const kept = await dirs?.get(dirKey);
  if (kept !== undefined && covers(kept, after)) {
    yield* walkChildren(root, selected(kept.children, dirKey + namePrefix, after), after, dirs);
    if (kept.complete) return;
    past = kept.children.at(-1)?.key;
  }
  const unwalked = (c: Child) => past === undefined || compareKeys(c.key, past) > 0;
  const started = Date.now();
  let entries: Dirent[];
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (err) {
    if (isAbsent(err)) return;
    throw err;
  }
  if (dirs !== undefined) {
    dirs.reads.directories++;
    dirs.reads.entries += entries.length;
  }
  const settled =
    dirs !== undefined && entries.length >= CACHED_DIR_CHILDREN
      ? await dirs.settled(dirKey, started)
      : undefined;
  if (dirs !== undefined && settled !== undefined) {
    // Kept (a run of it: from where this walk is), then selected from as a kept one is. Only
    // what sorts after that is checked and sorted: a walk deep into a large directory sorts
    // what is left of it.
    const from =
      past === undefined || (after !== undefined && compareKeys(after, past) > 0) ? after : past;
    const rest = validChildren(dirKey, entries, from);
    sortKeys(rest);
    dirs.keep(dirKey, settled, rest, from);
    yield* walkChildren(
      root,
      only(selected(rest, dirKey + namePrefix, after), unwalked),
      after,
      dirs,
    );
    return;
  }
  // What sorts before `after` is dropped first (a page deep into a large directory then checks
  // and sorts only what is left), except a directory `after` is inside.
  const children = validChildren(
    dirKey,
    entries.filter((e) => e.name.startsWith(namePrefix)),
    after,
  ).filter(unwalked);
  sortKeys(children);
  yield* walkChildren(root, children, after, dirs);
}

/** Keys a walk yields at once: a run of files, a page deep into a directory costs few awaits. */
const RUN = 256;

/** The keys of `children` (sorted), a directory's walked in turn, in runs of files. */
async function* walkChildren(
  root: string,
  children: Iterable<Child>,
  after: string | undefined,
  dirs: DirCache | undefined,
): AsyncGenerator<string[]> {
  let run: string[] = [];
  for (const { key, dir } of children) {
    if (!dir) {
      run.push(key);
      if (run.length < RUN) continue;
    }
    if (run.length > 0) yield run;
    run = [];
    // A directory sorting before `after` holds only earlier keys, unless `after` is inside it.
    if (dir) yield* walkKeys(root, key, "", after, dirs);
  }
  if (run.length > 0) yield run;
}

/**
 * The children of `entries` that a listing may show, those sorting after `after` (or a
 * directory `after` is inside) when given. Sorting directories as "name/" makes a depth-first
 * walk yield keys in byte order: "a-b" < "a/c" < "a0", although the directory "a" sorts before
 * the file "a-b".
 */
function validChildren(dirKey: string, entries: readonly Dirent[], after?: string): Child[] {
  const children: Child[] = [];
  for (const e of entries) {
    if (isReservedSegment(e.name)) continue;
    const dir = e.isDirectory();
    const key = `${dirKey}${e.name}${dir ? "/" : ""}`;
    if (after !== undefined && compareKeys(key, after) <= 0 && !(dir && after.startsWith(key))) {
      continue;
    }
    const valid = dir
      ? keyProblem(e.name) === undefined
      : e.isFile() && keyProblem(key) === undefined;
    if (valid) children.push({ key, dir });
  }
  return children;
}

/**
 * The children of `sorted` whose key starts with `prefix` and sorts after `after` (or is a
 * directory `after` is inside: the one just before the first that sorts after it), in order.
 */
function* selected(
  sorted: readonly Child[],
  prefix: string,
  after: string | undefined,
): Generator<Child> {
  let i = firstAfter(sorted, prefix, true);
  if (after !== undefined) {
    let j = firstAfter(sorted, after, false);
    const inside = sorted[j - 1];
    if (inside?.dir && after.startsWith(inside.key)) j--;
    i = Math.max(i, j);
  }
  for (; i < sorted.length; i++) {
    const child = sorted[i] as Child;
    if (!child.key.startsWith(prefix)) return;
    yield child;
  }
}

function* only<T>(items: Iterable<T>, keep: (item: T) => boolean): Generator<T> {
  for (const item of items) if (keep(item)) yield item;
}

/** The index of the first of `sorted` whose key sorts after `key` (or equals it, with `orEqual`). */
function firstAfter(sorted: readonly Child[], key: string, orEqual: boolean): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys((sorted[mid] as Child).key, key);
    if (c > 0 || (orEqual && c === 0)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Sorts by key in UTF-8 byte order. Keys of ASCII alone (nearly all) compare as strings, which
 * is the same order without a buffer per comparison.
 */
function sortKeys(children: Child[]): void {
  const ascii = children.every(({ key }) => !NON_ASCII.test(key));
  if (ascii) children.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  else children.sort((a, b) => compareKeys(a.key, b.key));
}

/** Outside printable ASCII (control characters never reach here: keyProblem refuses them). */
const NON_ASCII = /[^ -~]/;

/** ENOENT, or ENOTDIR when a path component is a file: either way, nothing is there. */
export function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}
