// The one place a secret's plaintext touches a file on the deployer: a private scratch file
// on a tmpfs (never a disk), for `secrets edit`. Removed after, its bytes overwritten first;
// also when a second interrupt has the process exit at once (it is one of its last words).
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, realpath, rm, stat, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import { OperationError } from "../errors.js";
import { onLastWord } from "../util/last-words.js";

/** statfs(2) magic numbers of file systems that live only in memory. */
const MEMORY_FILE_SYSTEMS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

/** Where scratch files go when $XDG_RUNTIME_DIR is not set or not fit. */
const FALLBACK_DIRECTORIES = ["/dev/shm"];

/**
 * Opened so that a link in the file's place is never followed (ELOOP): were one there, the
 * write or the zeroing would go to whatever file it names, as the user nixship runs as (root
 * under sudo). Non-blocking: a named pipe put there does not hold the open.
 */
const NO_FOLLOW = constants.O_NOFOLLOW | constants.O_NONBLOCK;

export interface ScratchFile {
  readonly path: string;
  /** Overwrites the file with zeros and removes it and its directory; safe to call twice. */
  remove(): Promise<void>;
}

/** The sticky bit (S_ISVTX): in such a directory only a name's owner may rename or remove it. */
const STICKY = 0o1000;

const euid = () => process.geteuid?.() ?? process.getuid?.() ?? -1;

/**
 * Why no other user can swap a name in `dir` (resolved, links followed) for a link: it is this
 * user's own and writable by no group or other, or a sticky directory (like /dev/shm, 1777) of
 * this user or root; each directory above it is root's or this user's and writable only by
 * its owner, unless sticky. Undefined: fit. (`$XDG_RUNTIME_DIR` under `sudo -E` is the user's
 * own, where the user could put a link in the scratch file's place for root to follow.)
 */
async function unfitness(dir: string): Promise<string | undefined> {
  const me = euid();
  const info = await stat(dir);
  if (!info.isDirectory()) return "it is not a directory";
  const sticky = (info.mode & STICKY) !== 0;
  const others = (info.mode & 0o022) !== 0;
  const mode = (info.mode & 0o7777).toString(8).padStart(4, "0");
  // A sticky directory of this user or root: others may add names, not rename or remove ours.
  const shared = sticky && (info.uid === me || info.uid === 0);
  if (!shared && info.uid !== me) {
    const owner = info.uid === 0 ? "root" : `uid ${info.uid}`;
    return `it is ${owner}'s (mode ${mode}), not this user's (uid ${me}): its owner could put a link in the scratch file's place`;
  }
  if (!shared && others) {
    return `its group or others may write it (mode ${mode}): they could put a link in the scratch file's place`;
  }
  for (let above = dirname(dir); ; above = dirname(above)) {
    const up = await stat(above);
    const upSticky = (up.mode & STICKY) !== 0;
    if ((up.uid !== me && up.uid !== 0) || ((up.mode & 0o022) !== 0 && !upSticky)) {
      return `the directory ${above} above it is not root's or this user's alone, so another user could swap the path for a link`;
    }
    if (above === dirname(above)) return undefined;
  }
}

/**
 * Where scratch files may go: $XDG_RUNTIME_DIR, then /dev/shm, the first that is a tmpfs and
 * fit (see unfitness), resolved (the path used from then on names no link). Exported for tests.
 */
export async function scratchDirectory(
  env: NodeJS.ProcessEnv,
  fallbacks: readonly string[] = FALLBACK_DIRECTORIES,
): Promise<string> {
  const candidates = [env.XDG_RUNTIME_DIR, ...fallbacks].filter((d): d is string => !!d);
  const refused: string[] = [];
  for (const dir of candidates) {
    const real = await realpath(dir).catch(() => undefined);
    const info = real === undefined ? undefined : await statfs(real).catch(() => undefined);
    if (real === undefined || info === undefined || !MEMORY_FILE_SYSTEMS.has(info.type)) {
      refused.push(`${dir}: not a tmpfs`);
      continue;
    }
    const why = await unfitness(real).catch(
      (err: NodeJS.ErrnoException) => err.code ?? "unreadable",
    );
    if (why === undefined) return real;
    refused.push(`${dir}: ${why}`);
  }
  throw new OperationError(
    "no-tmpfs",
    `no tmpfs fit to edit a secret on (${refused.join("; ") || "none to try"}): its plaintext must not reach a disk, nor a place another user can redirect`,
    {
      hint: "mount a tmpfs on /dev/shm (mode 1777), or set XDG_RUNTIME_DIR to a tmpfs directory of your own of mode 0700 (under sudo, unset it: 'sudo' without -E)",
    },
  );
}

/** A scratch directory's name: the process that made it, so that a later one can tell it died. */
const SCRATCH_NAME = /^nixship-secret-([1-9][0-9]*)-[0-9a-f]{16}$/;

/**
 * Removes, zeroed first, the scratch directories of this user in `base` whose process is gone:
 * an edit killed outright (SIGKILL, SIGQUIT) says no last words, and its plaintext stays on the
 * tmpfs until the next edit, or the next boot.
 */
async function sweepScratch(base: string): Promise<void> {
  const names = await readdir(base).catch(() => [] as string[]);
  for (const entry of names) {
    const pid = Number(SCRATCH_NAME.exec(entry)?.[1] ?? Number.NaN);
    if (!Number.isSafeInteger(pid) || alive(pid)) continue;
    const dir = join(base, entry);
    const info = await lstat(dir).catch(() => undefined);
    if (info === undefined || !info.isDirectory() || info.uid !== euid()) continue;
    for (const file of await readdir(dir).catch(() => [] as string[])) {
      await zeroFile(join(dir, file));
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** Whether process `pid` lives (one of another user's too). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Overwrites a regular file with zeros, never through a link put in its place. */
async function zeroFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDWR | NO_FOLLOW).catch(() => undefined);
  if (handle === undefined) return;
  try {
    const info = await handle.stat();
    if (info.isFile()) await handle.write(Buffer.alloc(info.size), 0, info.size, 0);
  } finally {
    await handle.close();
  }
}

/**
 * A new file (mode 0600, in a directory of mode 0700) holding `content`; the scratch
 * directories of edits that died before are removed first (sweepScratch).
 */
export async function createScratchFile(
  name: string,
  content: Uint8Array,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ScratchFile> {
  const base = await scratchDirectory(env);
  await sweepScratch(base);
  const dir = join(base, `nixship-secret-${process.pid}-${randomBytes(8).toString("hex")}`);
  await mkdir(dir, { mode: 0o700 });
  const path = join(dir, name);
  let forget = () => {};
  // Forgotten as a last word only once gone: a second interrupt may come while it is removed.
  const remove = async () => {
    await zeroFile(path);
    await rm(dir, { recursive: true, force: true });
    forget();
  };
  // Until removed: a process made to exit at once (a second interrupt) removes it first.
  forget = onLastWord(remove);
  try {
    const handle = await open(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NO_FOLLOW,
      0o600,
    );
    try {
      await handle.writeFile(content);
    } finally {
      await handle.close();
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { path, remove };
}
