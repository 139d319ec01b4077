// The deployer's private runtime directory: where ssh control sockets (and any other runtime
// file of nixship's) live. Another user of the machine must never be able to make it, write
// to it or swap it: a directory found already there is used only if this user owns it, it is a
// real directory (not a link) and nobody else may enter it.
import { lstatSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OperationError } from "../errors.js";

let cached: { key: string; dir: string } | undefined;

/**
 * `$XDG_RUNTIME_DIR/nixship` when the session has a runtime directory (it is the user's own,
 * 0700, by the XDG spec: checked all the same), else `$TMPDIR/nixship-UID`. Made 0700 when
 * missing; refused, naming it, when it is not safe. Read once per process.
 */
export function privateRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0;
  const xdg = env.XDG_RUNTIME_DIR;
  const key = `${uid}\0${xdg ?? ""}\0${tmpdir()}`;
  if (cached?.key === key) return cached.dir;
  let dir: string;
  // A session without the directory its environment names (e.g. after su) uses TMPDIR.
  if (xdg !== undefined && xdg !== "" && lstatSync(xdg, { throwIfNoEntry: false }) !== undefined) {
    requirePrivate(xdg, uid, "XDG_RUNTIME_DIR");
    dir = join(xdg, "nixship");
  } else {
    dir = join(tmpdir(), `nixship-${uid}`);
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  requirePrivate(dir, uid, "nixship's runtime directory");
  cached = { key, dir };
  return dir;
}

/** Refuses `dir` unless it is a directory (not a link) that `uid` owns and only it may use. */
function requirePrivate(dir: string, uid: number, what: string): void {
  const st = lstatSync(dir, { throwIfNoEntry: false });
  const problem =
    st === undefined
      ? "cannot be made"
      : st.isSymbolicLink()
        ? "is a symbolic link"
        : !st.isDirectory()
          ? "is not a directory"
          : st.uid !== uid
            ? `belongs to uid ${st.uid}, not to this user (uid ${uid})`
            : (st.mode & 0o077) !== 0
              ? `has mode ${(st.mode & 0o777).toString(8)}: other users may use it`
              : undefined;
  if (problem === undefined) return;
  throw new OperationError("runtime-dir-unsafe", `${what} ${dir} ${problem}`, {
    hint: "nixship keeps its ssh connections there, so another user must not control it: remove it (it is made again, mode 0700), or set XDG_RUNTIME_DIR (or TMPDIR) to a directory only you can use",
  });
}
