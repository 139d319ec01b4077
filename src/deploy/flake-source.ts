// Which flake reference Nix evaluates for a local flake directory, so that no secret lying
// beside the fleet file is copied into the world-readable Nix store. Inside a git repository
// it is `git+file` (only tracked files are copied, as `nix build .#x` does); elsewhere, or when
// the fleet file says `path:` itself, it is `path:`, which copies every file: then the
// directory is searched first, and one holding a secret key is refused, naming the file.
import { open, readdir, realpath, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { InputError } from "../errors.js";
import { GIT_TIMEOUT_MS, gitTopLevel } from "../nix/git-flake.js";
import { runCommand } from "../util/run.js";
import { shellWord } from "../util/shell-quote.js";
import { sourceReference } from "../util/source-reference.js";

/** Entries a `path:` source is searched through at most; a larger tree is refused unsearched. */
const SCAN_ENTRIES = 100_000;
/** Bytes read from the start of each file: every key format names itself within them. */
const SCAN_HEAD = 4096;

/** Who named a local flake directory, for its errors: `hosts.web1.system`, or push's argument. */
export interface FlakeNamer {
  readonly where: string;
  /** What the flake's relative path is relative to: "the fleet file's directory, /srv". */
  readonly base: string;
}

/**
 * Refuses a local flake directory that is not there, is not a directory or holds no flake.nix
 * (bad input, exit 2), before git or Nix is asked about it, naming who named it and the fix.
 */
async function requireFlakeDir(dir: string, named: FlakeNamer): Promise<void> {
  const fix = `fix the path (a relative one is relative to ${named.base}), or make the flake there ('nix flake init')`;
  // A local reference's query is Nix's to judge (it refuses the parameters it does not know);
  // the directory is what comes before it, and it is named without the query's values.
  const path = dir.split("?")[0] as string;
  const shown = sourceReference(dir);
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
    throw err;
  });
  if (info === undefined) {
    throw new InputError(
      "flake-missing",
      `${named.where}: the flake directory ${shown} does not exist`,
      { hint: fix },
    );
  }
  if (!info.isDirectory()) {
    throw new InputError("flake-missing", `${named.where}: ${shown} is not a directory`, {
      hint: fix,
    });
  }
  const flake = await stat(join(path, "flake.nix")).catch(() => undefined);
  if (flake === undefined) {
    throw new InputError(
      "flake-missing",
      `${named.where}: the flake directory ${shown} has no flake.nix`,
      { hint: fix },
    );
  }
}

export async function localFlakeRef(
  dir: string,
  explicitPath: boolean,
  named: FlakeNamer,
): Promise<string> {
  await requireFlakeDir(dir, named);
  // Nix refuses a path: flake reached through a symlink ("escapes from ..."): name its real
  // directory.
  const real = await realpath(dir).catch(() => dir);
  if (!explicitPath) {
    const top = await gitTopLevel(real);
    if (top !== undefined) {
      const sub = relative(top, real);
      await requireTracked(top, sub, named);
      return `git+file://${top}${sub ? `?dir=${encodeURIComponent(sub)}` : ""}`;
    }
  }
  const secret = await findSecret(real);
  if (secret !== undefined) {
    throw new InputError(
      "secret-in-flake",
      `${secret.file} holds ${secret.what}, and the flake ${real} would be copied whole into the world-readable Nix store`,
      {
        hint: explicitPath
          ? "move the key out of the flake's directory, or use a git repository (only tracked files are copied)"
          : "move the key out of the flake's directory, or make the directory a git repository with the key in .gitignore",
      },
    );
  }
  return `path:${real}`;
}

/**
 * Refuses a flake inside a git work tree that does not track its flake.nix (a directory the
 * repository ignores, a flake not yet added): Nix reads only what git tracks, and says only that
 * a path in the store is missing.
 */
async function requireTracked(top: string, sub: string, named: FlakeNamer): Promise<void> {
  const file = join(sub, "flake.nix");
  const r = await runCommand("git", ["-C", top, "ls-files", "--error-unmatch", "--", file], {
    okCodes: [0, 1],
    purpose: "ask git whether it tracks the flake",
    timeoutMs: GIT_TIMEOUT_MS,
  });
  if (r.code === 0) return;
  const dir = join(top, sub);
  throw new InputError(
    "flake-untracked",
    `${named.where}: ${join(dir, "flake.nix")} is in the git repository ${top}, which does not track it, and Nix reads a flake there from the files git tracks`,
    {
      hint: `'git -C ${shellWord(top)} add ${shellWord(file)}' (a commit is not needed; a directory the repository ignores needs 'git add -f'), or name it ${shellWord(`path:${dir}`)}, which copies the directory whole`,
    },
  );
}

/** What a file's first bytes say it is, when that is a secret key. */
export function secretKind(head: string): string | undefined {
  if (/-----BEGIN (OPENSSH|RSA|DSA|EC|ENCRYPTED)? ?PRIVATE KEY-----/.test(head)) {
    return "an SSH or TLS private key";
  }
  if (/^AGE-SECRET-KEY-1[0-9A-Z]+\s*$/m.test(head)) return "an age secret key";
  // A Nix (and nixship) signing key: NAME:BASE64 of 64 bytes.
  if (/^[^:\s]+:[A-Za-z0-9+/]{86}==\s*$/.test(head)) return "a Nix secret signing key";
  return undefined;
}

/** The first file under `root` that holds a secret key (not following links). */
async function findSecret(root: string): Promise<{ file: string; what: string } | undefined> {
  const pending = [root];
  let seen = 0;
  const buffer = Buffer.alloc(SCAN_HEAD);
  while (pending.length > 0) {
    const dir = pending.pop() as string;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (++seen > SCAN_ENTRIES) {
        throw new InputError(
          "flake-too-large",
          `the flake ${root} has more than ${SCAN_ENTRIES} files: too many to check for secret keys before copying it whole into the Nix store`,
          { hint: "use a git repository (only tracked files are copied)" },
        );
      }
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== ".git") pending.push(path);
        continue;
      }
      if (!entry.isFile()) continue;
      // A file this user cannot read, Nix (run as this user) cannot copy into the store either.
      const handle = await open(path, "r").catch(() => undefined);
      if (handle === undefined) continue;
      try {
        const { bytesRead } = await handle.read(buffer, 0, SCAN_HEAD, 0);
        const what = secretKind(buffer.subarray(0, bytesRead).toString("latin1"));
        if (what !== undefined) return { file: path, what };
      } finally {
        await handle.close();
      }
    }
  }
  return undefined;
}
