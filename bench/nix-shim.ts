// A `nix` put first on PATH for one benchmarked command: it runs the real Nix under GNU time and
// appends each call's subcommand, wall seconds, CPU seconds and peak RSS to a log, so that a
// `nixship build` can be split into its evaluation and its build. It also keeps the expression
// of each `nix eval --expr`.
import { chmod, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface NixShim {
  /** The directory to put first on PATH. */
  readonly bin: string;
  /** The rusage log and the expressions, reset by `clear`. */
  readonly logDir: string;
}

export interface NixCall {
  /** eval, build, path-info, --version, ... (the first of them among the arguments). */
  readonly command: string;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly maxRssBytes: number;
}

/** Writes the shim into `dir`, running `realNix` (an absolute path). */
export async function makeNixShim(dir: string, realNix: string): Promise<NixShim> {
  const bin = join(dir, "bin");
  const logDir = join(dir, "log");
  await mkdir(bin, { recursive: true });
  await mkdir(logDir, { recursive: true });
  const script = `#!/bin/sh
# nixship bench: the real Nix under GNU time (bench/nix-shim.ts)
cmd=
prev=
for a in "$@"; do
  case "$a" in
    eval|build|path-info|copy|store|--version) [ -n "$cmd" ] || cmd=$a ;;
  esac
  if [ "$prev" = --expr ]; then printf '%s' "$a" > '${logDir}'/expr.$$; fi
  prev=$a
done
exec /usr/bin/time -a -o '${logDir}/calls' -f "\${cmd:-other} %e %U %S %M" '${realNix}' "$@"
`;
  await writeFile(join(bin, "nix"), script);
  await chmod(join(bin, "nix"), 0o755);
  return { bin, logDir };
}

/** The calls logged since the last `clearShimLog`, in order. */
export async function readShimCalls(shim: NixShim): Promise<NixCall[]> {
  const text = await readFile(join(shim.logDir, "calls"), "utf8").catch(() => "");
  // GNU time writes "Command exited with non-zero status N" before a failed call's line.
  return text
    .split("\n")
    .map((line) => /^(\S+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({
      command: m[1] as string,
      seconds: Number(m[2]),
      cpuSeconds: Number(m[3]) + Number(m[4]),
      maxRssBytes: Number(m[5]) * 1024,
    }));
}

/** The expressions `nix eval --expr` was given since the last clear. */
export async function readShimExpressions(shim: NixShim): Promise<string[]> {
  const files = (await readdir(shim.logDir)).filter((f) => f.startsWith("expr."));
  return Promise.all(files.map((f) => readFile(join(shim.logDir, f), "utf8")));
}

export async function clearShimLog(shim: NixShim): Promise<void> {
  for (const f of await readdir(shim.logDir)) await rm(join(shim.logDir, f), { force: true });
}
