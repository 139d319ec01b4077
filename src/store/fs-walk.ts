// Lists the fs store's keys in ascending UTF-8 byte order (S3's order) by walking only the
// directories that can hold them, and skipping whole subtrees that sort before the page token.
import type { Dirent } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { compareKeys, isReservedSegment, keyProblem } from "./keys.js";

/**
 * Keys under `dirKey` ("" or "a/b/") whose next segment starts with `namePrefix`, after `after`.
 * Temp and lock files, symlinks and names that are not valid keys are never yielded.
 */
export async function* walkKeys(
  root: string,
  dirKey: string,
  namePrefix: string,
  after?: string,
): AsyncGenerator<string> {
  let entries: Dirent[];
  try {
    entries = await readdir(join(root, dirKey), { withFileTypes: true });
  } catch (err) {
    if (isAbsent(err)) return;
    throw err;
  }
  // Sorting directories as "name/" makes this depth-first walk yield keys in byte order:
  // "a-b" < "a/c" < "a0", although the directory "a" sorts before the file "a-b".
  // What sorts before `after` is dropped first (a page deep into a large directory then checks
  // and sorts only what is left), except a directory `after` is inside.
  const children = entries
    .filter((e) => e.name.startsWith(namePrefix) && !isReservedSegment(e.name))
    .map((e) => ({ key: `${dirKey}${e.name}${e.isDirectory() ? "/" : ""}`, entry: e }))
    .filter(
      ({ key, entry }) =>
        after === undefined ||
        compareKeys(key, after) > 0 ||
        (entry.isDirectory() && after.startsWith(key)),
    )
    .filter(({ key, entry }) =>
      entry.isDirectory()
        ? keyProblem(entry.name) === undefined
        : entry.isFile() && keyProblem(key) === undefined,
    );
  sortKeys(children);
  for (const { key, entry } of children) {
    if (entry.isFile()) yield key;
    // A directory sorting before `after` holds only earlier keys, unless `after` is inside it.
    else yield* walkKeys(root, key, "", after);
  }
}

/**
 * Sorts by key in UTF-8 byte order. Keys of ASCII alone (nearly all) compare as strings, which
 * is the same order without a buffer per comparison.
 */
function sortKeys(children: { readonly key: string }[]): void {
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
