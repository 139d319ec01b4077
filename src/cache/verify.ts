// Verify a cache, or some paths and their closures: signatures against trusted keys, NAR
// presence, FileHash/FileSize and NarHash/NarSize. Problems are reported per path, as data.
import { NixshipError } from "../errors.js";
import type { PublicKey } from "../nix/keys.js";
import { checkNarInfoSignatures, type NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import { listAll } from "../store/helpers.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { requireCacheInfo } from "./cache-info.js";
import { checkStoredNar, hashPartOf, NarCheckError, readNarInfo } from "./read.js";

export type ProblemKind =
  | "missing"
  | "bad-narinfo"
  | "signature"
  | "nar-missing"
  | "file-mismatch"
  | "nar-mismatch"
  | "bad-compression"
  | "error";

export interface PathProblem {
  readonly path: string;
  readonly kind: ProblemKind;
  readonly message: string;
}

export interface VerifyReport {
  readonly checked: number;
  readonly ok: number;
  readonly problems: readonly PathProblem[];
}

export interface VerifyOptions {
  readonly store: ObjectStore;
  readonly trusted: readonly PublicKey[];
  /** Paths to check with their closures; the whole cache when empty. */
  readonly paths?: readonly StorePath[];
  readonly jobs?: number;
  readonly onChecked?: (path: string, problems: readonly PathProblem[]) => void;
}

export async function verifyCache(options: VerifyOptions): Promise<VerifyReport> {
  const { store } = options;
  const targets: string[] = options.paths?.length ? [...options.paths] : await wholeCache(store);
  const seen = new Set<string>(targets.map(hashPartOf));
  const queue = [...targets];
  const problems: PathProblem[] = [];
  let checked = 0;
  let ok = 0;
  while (queue.length > 0) {
    const batch = queue.splice(0, queue.length);
    await mapLimit(batch, options.jobs ?? 8, async (path) => {
      const { found, pathProblems } = await checkPath(store, path, options.trusted);
      checked++;
      if (pathProblems.length === 0) ok++;
      problems.push(...pathProblems);
      options.onChecked?.(path, pathProblems);
      for (const ref of found?.references ?? []) {
        if (!seen.has(hashPartOf(ref))) {
          seen.add(hashPartOf(ref));
          queue.push(ref);
        }
      }
    });
  }
  problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { checked, ok, problems };
}

/**
 * Every narinfo's hash part. A cache without nix-cache-info is no binary cache at all (most
 * likely a mistyped URL): that is an error, as every cache command says it (`no-binary-cache`,
 * exit 2), not a clean bill of health with 0 paths checked.
 */
async function wholeCache(store: ObjectStore): Promise<string[]> {
  await requireCacheInfo(store);
  return allHashParts(store);
}

async function allHashParts(store: ObjectStore): Promise<string[]> {
  const hashes: string[] = [];
  for await (const obj of listAll(store, "")) {
    const m = /^([0-9a-z]{32})\.narinfo$/.exec(obj.key);
    if (m?.[1]) hashes.push(m[1]);
  }
  return hashes;
}

async function checkPath(
  store: ObjectStore,
  path: string,
  trusted: readonly PublicKey[],
): Promise<{ found: NarInfo | undefined; pathProblems: PathProblem[] }> {
  const problem = (kind: ProblemKind, message: string): PathProblem => ({
    path: label,
    kind,
    message,
  });
  let label = path;
  let info: NarInfo | undefined;
  try {
    info = await readNarInfo(store, path);
  } catch (err) {
    return {
      found: undefined,
      pathProblems: [
        problem(
          err instanceof NixshipError && err.exitCode === 2 ? "bad-narinfo" : "error",
          (err as Error).message,
        ),
      ],
    };
  }
  if (!info)
    return { found: undefined, pathProblems: [problem("missing", `${path} is not in the cache`)] };
  label = info.storePath;
  const sig = checkNarInfoSignatures(info, trusted);
  if (!sig.ok) {
    return {
      found: info,
      pathProblems: sig.problems.map((m) => problem("signature", `${label}: ${m}`)),
    };
  }
  try {
    await checkStoredNar(store, info);
  } catch (err) {
    if (err instanceof NarCheckError)
      return { found: info, pathProblems: [problem(err.problem.kind, err.problem.message)] };
    return { found: info, pathProblems: [problem("error", `${label}: ${(err as Error).message}`)] };
  }
  return { found: info, pathProblems: [] };
}
