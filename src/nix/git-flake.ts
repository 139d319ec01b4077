// A flake in a git work tree, as Nix reads it: from the files git tracks, copied into the
// store. Which work tree holds a directory, and the fix when an evaluation met a file of the
// flake's copy that git never gave it.
import { realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { OperationError } from "../errors.js";
import { runCommand } from "../util/run.js";
import { shellWord } from "../util/shell-quote.js";

/** How long git may take to name a work tree: a hung network mount or hook meets it. */
export const GIT_TIMEOUT_MS = 10_000;

/** The top of the git work tree holding `dir`, if it is in one. */
export async function gitTopLevel(dir: string): Promise<string | undefined> {
  const r = await runCommand("git", ["-C", dir, "rev-parse", "--show-toplevel"], {
    okCodes: [0, 128],
    purpose: "find the git repository of the flake",
    timeoutMs: GIT_TIMEOUT_MS,
  }).catch((err: unknown) => {
    // No git at all: then the flake is in no git work tree. A git that failed otherwise (or
    // hung) must not turn a git flake into a path: one, which copies untracked files too.
    if (err instanceof OperationError && err.code === "command-missing") return undefined;
    throw err;
  });
  const top = r?.code === 0 ? r.stdout.trim() : "";
  return top ? await realpath(top) : undefined;
}

/** A file of a flake's copy in the store that Nix found missing (Nix 2.8's words, and 2.26's). */
const MISSING_SOURCE_FILE =
  /['"]\/nix\/store\/[0-9a-df-np-sv-z]{32}-source\/([^'"]+)['"](?:: No such file or directory| does not exist)/;

/**
 * The fix for an evaluation that met a file missing from a git flake's copy in the store while
 * it is there in the work tree around `dir`: git does not track it, so Nix never copied it. The
 * `git add` to run, or undefined when the error is another.
 */
export async function untrackedFileFix(error: string, dir: string): Promise<string | undefined> {
  const relativePath = MISSING_SOURCE_FILE.exec(error)?.[1];
  if (relativePath === undefined) return undefined;
  const top = await gitTopLevel(dir).catch(() => undefined);
  if (top === undefined) return undefined;
  const there = await stat(join(top, relativePath)).catch(() => undefined);
  if (there === undefined) return undefined;
  return `${join(top, relativePath)} is there, but the git repository ${top} does not track it, and Nix reads a flake there from the files git tracks: 'git -C ${shellWord(top)} add ${shellWord(relativePath)}' (a commit is not needed), then run it again`;
}
