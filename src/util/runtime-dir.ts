// The deployer's private runtime directory: where ssh control sockets (and any other runtime
// file of nixship's) live. Another user of the machine must never be able to make it, write
// to it or swap it, nor stop nixship by making it first: a directory found already there is
// used only if this user owns it, it is a real directory (not a link) and nobody else may enter
// it; a shared one (/tmp) that another user took first is passed over for a fresh one.
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OperationError } from "../errors.js";

let cached: { key: string; dir: string } | undefined;

/** Where root's runtime directory goes when /run is root's own (no other user can write it). */
const ROOT_RUN = "/run";

/**
 * `$XDG_RUNTIME_DIR/nixship` when the session has a runtime directory (it is the user's own,
 * 0700, by the XDG spec: checked all the same); else, for root, `/run/nixship-deployer` when only root
 * may write /run; else `$TMPDIR/nixship-UID`, and when another user made that first (or made it
 * unsafe), a fresh `$TMPDIR/nixship-UID-XXXXXX` of this process (mkdtemp: a new name, made
 * 0700; removed when the process exits). Made 0700 when missing; a directory nobody else can
 * make that is not safe is refused, naming it. Read once per process.
 */
export function privateRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0;
  const xdg = env.XDG_RUNTIME_DIR;
  const key = `${uid}\0${xdg ?? ""}\0${tmpdir()}`;
  if (cached?.key === key) return cached.dir;
  let dir: string;
  // A session without the directory its environment names (e.g. after su) goes on below.
  if (xdg !== undefined && xdg !== "" && lstatSync(xdg, { throwIfNoEntry: false }) !== undefined) {
    requirePrivate(xdg, uid, "XDG_RUNTIME_DIR");
    dir = makePrivate(join(xdg, "nixship"), uid);
  } else if (uid === 0 && problemOf(ROOT_RUN, 0, 0o022) === undefined) {
    // Not /run/nixship: that is activate.sh's state on a host, and the deployer may be one.
    dir = makePrivate(join(ROOT_RUN, "nixship-deployer"), uid);
  } else {
    dir = sharedTmp(uid);
  }
  cached = { key, dir };
  return dir;
}

/** `dir` made 0700 when missing, then required private (refused, naming it, when not). */
function makePrivate(dir: string, uid: number): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  requirePrivate(dir, uid, "nixship's runtime directory");
  return dir;
}

/**
 * `$TMPDIR/nixship-UID` if it is (or can be made) this user's private directory; else, since
 * any user can make that name first in a shared TMPDIR, a fresh one no one else can have made.
 */
function sharedTmp(uid: number): string {
  const dir = join(tmpdir(), `nixship-${uid}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  if (problemOf(dir, uid, 0o077) === undefined) return dir;
  let fresh: string;
  try {
    fresh = mkdtempSync(`${dir}-`);
  } catch (err) {
    throw new OperationError(
      "runtime-dir-unsafe",
      `nixship's runtime directory ${dir} ${problemOf(dir, uid, 0o077)}, and no fresh one could be made in ${tmpdir()}: ${(err as Error).message}`,
      { cause: err, hint: RUNTIME_HINT },
    );
  }
  requirePrivate(fresh, uid, "nixship's runtime directory");
  // This process's own: its ssh connections end with it (ssh-transport.ts), and so does it.
  process.once("exit", () => rmSync(fresh, { recursive: true, force: true }));
  return fresh;
}

const RUNTIME_HINT =
  "nixship keeps its ssh connections there, so another user must not control it: remove it (it is made again, mode 0700), or set XDG_RUNTIME_DIR (or TMPDIR) to a directory only you can use";

/** Refuses `dir` unless it is a directory (not a link) that `uid` owns and only it may use. */
function requirePrivate(dir: string, uid: number, what: string): void {
  const problem = problemOf(dir, uid, 0o077);
  if (problem === undefined) return;
  throw new OperationError("runtime-dir-unsafe", `${what} ${dir} ${problem}`, {
    hint: RUNTIME_HINT,
  });
}

/**
 * Why `dir` is not a directory (not a link) that `uid` owns with none of the `denied` mode bits
 * (0o077: only its owner may use it; 0o022: only its owner may write it), or undefined.
 */
function problemOf(dir: string, uid: number, denied: number): string | undefined {
  const st = lstatSync(dir, { throwIfNoEntry: false });
  return st === undefined
    ? "cannot be made"
    : st.isSymbolicLink()
      ? "is a symbolic link"
      : !st.isDirectory()
        ? "is not a directory"
        : st.uid !== uid
          ? `belongs to uid ${st.uid}, not to this user (uid ${uid})`
          : (st.mode & denied) !== 0
            ? `has mode ${(st.mode & 0o777).toString(8)}: other users may ${denied === 0o022 ? "write" : "use"} it`
            : undefined;
}
