// Replacing a file so that a reader (or a restart after a crash) sees the old content or the
// new, never half of either: a temporary file beside it, flushed, renamed into place, and the
// directory flushed so that the rename itself survives a power cut. Several files are staged
// all first, so that a failed write leaves every one as it was.
import { randomBytes } from "node:crypto";
import { lstat, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { InputError } from "../errors.js";
import { onLastWord } from "./last-words.js";

export interface FileToWrite {
  readonly file: string;
  readonly content: string | Uint8Array;
  /** Default 0o644. */
  readonly mode?: number;
}

export async function writeFileAtomically(
  file: string,
  content: string | Uint8Array,
  mode = 0o644,
): Promise<void> {
  await writeFilesAtomically([{ file, content, mode }]);
}

/**
 * Writes every file as writeFileAtomically does, in two steps: each one's temporary file
 * written and flushed, then (only once all are) each renamed into place. A write that fails
 * removes every temporary file and leaves all the files as they were; only a rename failing
 * or an interrupt between the renames (moments, not a write's length) leaves some replaced.
 */
export async function writeFilesAtomically(files: readonly FileToWrite[]): Promise<void> {
  for (const { file } of files) await requireReplaceable(file);
  const staged: { readonly tmp: string; readonly target: string }[] = [];
  // A process made to stop at once (a second interrupt) removes what it staged, not yet renamed.
  const forget = onLastWord(() =>
    Promise.all(staged.map(({ tmp }) => unlink(tmp).catch(() => {}))),
  );
  try {
    for (const { file, content, mode = 0o644 } of files) {
      const target = resolve(file);
      const tmp = join(
        dirname(target),
        `.${basename(target)}.${randomBytes(6).toString("hex")}.tmp`,
      );
      const handle = await open(tmp, "wx", mode);
      staged.push({ tmp, target });
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    for (const { tmp, target } of staged) await rename(tmp, target);
  } catch (err) {
    await Promise.all(staged.map(({ tmp }) => unlink(tmp).catch(() => {})));
    throw err;
  } finally {
    forget();
  }
  for (const dir of new Set(staged.map(({ target }) => dirname(target)))) {
    const directory = await open(dir, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}

/** What `lstat` says a path is, in words, for one that is not a regular file. */
function kindOf(info: Awaited<ReturnType<typeof lstat>>): string {
  if (info.isDirectory()) return "a directory";
  if (info.isCharacterDevice()) return "a character device";
  if (info.isBlockDevice()) return "a block device";
  if (info.isFIFO()) return "a named pipe";
  if (info.isSocket()) return "a socket";
  return "not a regular file";
}

/**
 * Refuses to replace anything but a regular file (or a link, which is replaced, not followed):
 * a rename over a device or a pipe (`--out /dev/null --force`) would put a file in its place.
 * A path that is not there is fine.
 */
export async function requireReplaceable(file: string): Promise<void> {
  let info: Awaited<ReturnType<typeof lstat>>;
  try {
    info = await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (info.isFile() || info.isSymbolicLink()) return;
  throw new InputError(
    "not-a-file",
    `${file} is ${kindOf(info)}: nixship writes only regular files`,
    {
      hint: "name the path of a file to write (a new one, or a file to replace)",
    },
  );
}
