// Unpacks a NAR into a new directory like `nix-store --restore DIR`, all or nothing: the tree
// is built under a hidden sibling name and renamed into place only once the NAR parsed OK.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { InputError, OperationError } from "../errors.js";
import { untilAbortedEach } from "../util/until-aborted.js";
import { decodeNar, type NarSource } from "./nar-decode.js";

// Nix runs with umask 022 and creates files 0666, adding 0111 for executables, and
// directories 0777; the modes below are what that yields. They are set explicitly so the
// caller's umask cannot change the result.
const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const EXEC_MODE = 0o755;
/** The root directory stays private while it is filled, so nobody can swap paths inside it. */
const BUILDING_MODE = 0o700;
const CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const SLASH = Buffer.from("/");

/**
 * Restores `source` at `targetDir`, which must not exist (its parent must). On any error,
 * including a malformed NAR or `signal` aborting (an interrupt, even while the source stalls),
 * nothing is left behind under either name.
 */
export async function restoreNar(
  source: NarSource,
  targetDir: string,
  options: { readonly signal?: AbortSignal } = {},
): Promise<void> {
  const target = resolve(targetDir);
  // Before the first byte, a target that is there is bad input (exit 2); just before the
  // rename, one made meanwhile is a race the restore lost (exit 1).
  requireRestorable(target);
  const tmp = resolve(
    dirname(target),
    `.${basename(target)}.nixship-tmp-${randomBytes(6).toString("hex")}`,
  );
  const state = { created: false, rootIsDir: false };
  try {
    const input = options.signal === undefined ? source : untilAbortedEach(source, options.signal);
    await unpack(input, Buffer.from(tmp), state);
    if (state.rootIsDir) chmodSync(tmp, DIR_MODE);
    // rename(2) would silently replace an empty directory, so look once more just before.
    if (existsNow(target)) {
      throw new OperationError(
        "target-exists",
        `cannot restore into ${target}: something made it while the NAR was restored`,
      );
    }
    renameSync(tmp, target);
  } catch (err) {
    // Only what this restore created is removed, never a namesake it collided with.
    if (state.created) rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Creates the tree at `root`, noting in `state` once the root exists. Children are created
 * with O_EXCL/mkdir, neither of which follows a symlink, and only under directories this
 * restore made. Writes use synchronous calls: per small file they are far cheaper than a
 * thread-pool round trip, and each blocks the event loop for one chunk at most.
 */
async function unpack(
  source: NarSource,
  root: Buffer,
  state: { created: boolean; rootIsDir: boolean },
): Promise<void> {
  let fd: number | undefined;
  let left = 0;
  const close = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  try {
    for await (const ev of decodeNar(source)) {
      if (ev.kind === "data") {
        writeAll(fd as number, ev.chunk);
        left -= ev.chunk.length;
        if (left === 0) close();
        continue;
      }
      const path = ev.rawPath.length === 0 ? root : Buffer.concat([root, SLASH, ev.rawPath]);
      if (ev.kind === "directory") {
        const isRoot = ev.path === "";
        mkdirSync(path, isRoot ? BUILDING_MODE : DIR_MODE);
        state.created ||= isRoot;
        state.rootIsDir ||= isRoot;
        // mkdir's mode passes through the umask; chmod does not.
        chmodSync(path, isRoot ? BUILDING_MODE : DIR_MODE);
      } else if (ev.kind === "file") {
        fd = openSync(path, CREATE_FLAGS, FILE_MODE);
        state.created ||= ev.path === "";
        fchmodSync(fd, ev.executable ? EXEC_MODE : FILE_MODE);
        left = ev.size;
        if (left === 0) close();
      } else {
        symlinkSync(ev.rawTarget, path);
      }
      state.created ||= ev.path === "";
    }
  } finally {
    close();
  }
}

function writeAll(fd: number, chunk: Buffer): void {
  let done = 0;
  while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
}

/**
 * A restore may make `target`: it is not there yet (a restore never writes into or over one),
 * and the directory it is made in is (the restore makes only `target` itself). Bad input
 * otherwise (InputError): a caller checks it before it reads a byte of the NAR.
 */
export function requireRestorable(targetDir: string): void {
  const target = resolve(targetDir);
  refuseExisting(target);
  requireParent(target);
}

/** The directory `target` is made in must be there: the restore makes only `target` itself. */
function requireParent(target: string): void {
  const parent = dirname(target);
  let isDir = false;
  try {
    isDir = statSync(parent).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (!isDir) {
    throw new InputError(
      "restore-parent-missing",
      `cannot restore into '${target}': ${parent} is not a directory that exists`,
      { hint: `create ${parent} first (the restore makes only the last part of the path)` },
    );
  }
}

function existsNow(target: string): boolean {
  try {
    lstatSync(target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

function refuseExisting(target: string): void {
  if (!existsNow(target)) return;
  throw new InputError("target-exists", `cannot restore into ${target}: it already exists`, {
    hint: "name a path that is not there yet (a restore never writes into or over one)",
  });
}
