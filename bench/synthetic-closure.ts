// A synthetic closure for benchmarks: about 1 GB of NAR in ~50k files, copied from /usr (shared
// libraries, executables, Python/Perl sources, docs, headers) into ~200 store paths that reference
// each other, built by the local Nix with one nix-build (and reused once it is built).
import { spawn } from "node:child_process";
import { lstat, mkdir, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SOURCE_ROOT = "/usr";
const MB = 1_000_000;

interface Source {
  /** Directory under /usr. */
  readonly dir: string;
  readonly tag: string;
  readonly maxBytes: number;
  readonly maxFiles: number;
}

// Real closures are a mix: few big binaries, many small text files, some compressed data.
const SOURCES: readonly Source[] = [
  { dir: "lib/x86_64-linux-gnu", tag: "lib", maxBytes: 330 * MB, maxFiles: 2_000 },
  { dir: "bin", tag: "bin", maxBytes: 150 * MB, maxFiles: 600 },
  { dir: "lib/llvm-14", tag: "llvm", maxBytes: 120 * MB, maxFiles: 400 },
  { dir: "lib/python3.11", tag: "python", maxBytes: 60 * MB, maxFiles: 3_000 },
  { dir: "lib/python3", tag: "python-pkgs", maxBytes: 45 * MB, maxFiles: 3_000 },
  { dir: "share/perl", tag: "perl", maxBytes: 20 * MB, maxFiles: 1_500 },
  { dir: "share/perl5", tag: "perl5", maxBytes: 5 * MB, maxFiles: 500 },
  { dir: "share/doc", tag: "doc", maxBytes: 115 * MB, maxFiles: 4_500 },
  { dir: "include", tag: "include", maxBytes: 115 * MB, maxFiles: 8_000 },
  { dir: "share/man", tag: "man", maxBytes: 20 * MB, maxFiles: 10_000 },
  { dir: "share/cmake-3.25", tag: "cmake", maxBytes: 10 * MB, maxFiles: 3_200 },
  { dir: "share/vim", tag: "vim", maxBytes: 40 * MB, maxFiles: 2_000 },
  { dir: "share/icons", tag: "icons", maxBytes: 20 * MB, maxFiles: 5_600 },
  { dir: "lib/google-cloud-sdk/lib/surface", tag: "gcloud", maxBytes: 45 * MB, maxFiles: 12_000 },
];

/** About this many store paths besides the top one; sources' boundaries add a few more. */
const TARGET_SLICES = 180;
/** Store paths whose outputs each slice records, counted back from itself. */
const REFERENCE_OFFSETS = [1, 3, 17];
/** File names that can go in a Nix '' string and an xargs list without any quoting. */
const SAFE_NAME = /^[A-Za-z0-9._+\-/@,=:]+$/;

interface Picked {
  /** Relative to /usr. */
  readonly path: string;
  readonly size: number;
}

interface Slice {
  readonly name: string;
  readonly files: readonly Picked[];
}

export interface ClosureStats {
  readonly top: string;
  readonly paths: readonly string[];
  readonly narBytes: number;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
}

/** Builds the closure (Nix reuses it when nothing on the machine changed); returns its top. */
export async function buildSyntheticClosure(env: NodeJS.ProcessEnv): Promise<string> {
  const picked = await Promise.all(SOURCES.map(pickFiles));
  const slices = planSlices(SOURCES, picked);
  const dir = join(tmpdir(), "nixship-bench-closure");
  await mkdir(dir, { recursive: true });
  const file = join(dir, "closure.nix");
  await writeFile(file, renderExpression(slices));
  const out = await run("nix-build", ["--no-out-link", "--max-jobs", "2", file], env, {
    showLog: true,
  });
  return out.trim();
}

/** Path count and NAR size as Nix records them, and what the paths hold on disk. */
export async function closureStats(top: string, env: NodeJS.ProcessEnv): Promise<ClosureStats> {
  const infos = JSON.parse(await run("nix", ["path-info", "--json", "--recursive", top], env)) as {
    path: string;
    narSize: number;
  }[];
  const counts = { files: 0, dirs: 0, symlinks: 0 };
  for (const info of infos) await countTree(info.path, counts);
  return {
    top,
    paths: infos.map((i) => i.path),
    narBytes: infos.reduce((sum, i) => sum + i.narSize, 0),
    ...counts,
  };
}

/** Reads every path once through Nix, so that timed runs all read from the page cache. */
export async function warmPageCache(paths: readonly string[], env: NodeJS.ProcessEnv) {
  await run("nix-store", ["--export", ...paths], env, { discard: true });
}

async function pickFiles(source: Source): Promise<Picked[]> {
  const picked: Picked[] = [];
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(SOURCE_ROOT, rel), { withFileTypes: true }).catch(() => []);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (picked.length >= source.maxFiles) return;
      const path = `${rel}/${entry.name}`;
      if (!SAFE_NAME.test(path)) continue;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const { size } = await lstat(join(SOURCE_ROOT, path));
        if (bytes + size > source.maxBytes) continue;
        bytes += size;
        picked.push({ path, size });
      }
    }
  };
  await walk(source.dir);
  return picked;
}

/**
 * Cuts each source's files, in order, into slices of varying size (as real packages vary),
 * each about 1/TARGET_SLICES of the total files or bytes, whichever is reached first.
 */
function planSlices(sources: readonly Source[], picked: readonly Picked[][]): Slice[] {
  const all = picked.flat();
  const byteTarget = all.reduce((sum, f) => sum + f.size, 0) / TARGET_SLICES;
  const fileTarget = all.length / TARGET_SLICES;
  const slices: Slice[] = [];
  sources.forEach((source, s) => {
    let files: Picked[] = [];
    let bytes = 0;
    const close = (): void => {
      const n = String(slices.length).padStart(3, "0");
      slices.push({ name: `nixship-bench-${n}-${source.tag}`, files });
      files = [];
      bytes = 0;
    };
    for (const file of picked[s] ?? []) {
      files.push(file);
      bytes += file.size;
      // A golden-ratio sequence spreads the scale evenly over 0.25..1.75 without randomness.
      const scale = 0.25 + 1.5 * ((slices.length * 0.618034) % 1);
      if (bytes >= byteTarget * scale || files.length >= fileTarget * scale) close();
    }
    if (files.length > 0) close();
  });
  return slices;
}

function renderExpression(slices: readonly Slice[]): string {
  const ref = (i: number): string => `s${String(i).padStart(3, "0")}`;
  const bindings = slices.map((slice, i) => {
    const deps = REFERENCE_OFFSETS.map((o) => i - o).filter((j) => j >= 0);
    const list = slice.files.map((f) => f.path).join("\n");
    return `  ${ref(i)} = mk "${slice.name}" [ ${deps.map(ref).join(" ")} ] ''\n${list}\n'';`;
  });
  const all = slices.map((_, i) => ref(i)).join(" ");
  return `# Generated by bench/synthetic-closure.ts; do not edit.
let
  mk = name: deps: files: derivation {
    inherit name deps files;
    passAsFile = [ "files" ];
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      set -e
      mkdir -p "$out/nix-support"
      cd ${SOURCE_ROOT}
      xargs -r -d '\\n' cp --parents -t "$out" < "$filesPath"
      for d in $deps; do echo "$d"; done > "$out/nix-support/depends"
    '' ];
  };
${bindings.join("\n")}
in mk "nixship-bench-closure" [ ${all} ] ""
`;
}

async function countTree(path: string, counts: { files: number; dirs: number; symlinks: number }) {
  const st = await lstat(path);
  if (st.isSymbolicLink()) counts.symlinks++;
  else if (st.isFile()) counts.files++;
  else if (st.isDirectory()) {
    counts.dirs++;
    for (const name of await readdir(path)) await countTree(join(path, name), counts);
  }
}

interface RunOptions {
  /** Show Nix's log (stderr) as it goes, e.g. what nix-build is building. */
  readonly showLog?: boolean;
  /** Send stdout to /dev/null instead of returning it. */
  readonly discard?: boolean;
}

function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  options: RunOptions = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      env,
      stdio: ["ignore", options.discard ? "ignore" : "pipe", options.showLog ? "inherit" : "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    proc.stdout?.on("data", (d: Buffer) => out.push(d));
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    proc.on("error", reject);
    proc.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else
        reject(new Error(`'${command} ${args.slice(0, 3).join(" ")}' exited ${code}\n${stderr}`));
    });
  });
}
