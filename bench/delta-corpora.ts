// The corpora of `npm run bench:delta`: pairs of NARs (a base the host has, a target
// it lacks) from a synthetic mass rebuild, from real Debian 12 updates and from the lab's example
// change, each written once as NAR files under the bench's cache directory and reused.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, writeSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compareVersions, parsePackageName } from "../src/nix/closure-diff.js";
import { Sha256 } from "../src/nix/hash.js";
import { dumpChunks } from "../src/nix/nar-encode.js";
import { nix32Encode } from "../src/nix/nix32.js";

/** One delta to measure: the host has `base`, it fetches `target`. Both are NAR files. */
export interface Pair {
  readonly corpus: "mass rebuild" | "debian" | "lab example";
  readonly name: string;
  /** What the pair is, for the report (the versions, the debs). */
  readonly detail: string;
  readonly baseNar: string;
  readonly targetNar: string;
  /** The store paths, where the pair's NARs are of real ones (the lab's). */
  readonly storePaths?: { readonly base: string; readonly target: string };
}

const MB = 1_000_000;

/** Writes the NAR of `tree` to `file` (through a temporary name: a NAR file is whole or absent). */
async function writeNarFile(tree: string, file: string): Promise<void> {
  const partial = `${file}.partial`;
  const fd = openSync(partial, "w");
  try {
    for (const chunk of dumpChunks(tree, { reuse: true })) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  await rename(partial, file);
}

// ---------------------------------------------------------------------------------------------
// (a) A mass rebuild: every path gets a new hash, and every reference written inside a file
// with it; the contents are otherwise the same.

interface MassSource {
  /** Directory under /usr. */
  readonly dir: string;
  readonly tag: string;
  /** Its share of the corpus's bytes. */
  readonly share: number;
}

// A real closure's mix: shared libraries and executables, scripts and sources, docs, headers,
// and data that is compressed already (icons, gzipped man pages).
const MASS_SOURCES: readonly MassSource[] = [
  { dir: "lib/x86_64-linux-gnu", tag: "lib", share: 0.33 },
  { dir: "bin", tag: "bin", share: 0.15 },
  { dir: "lib/llvm-14", tag: "llvm", share: 0.12 },
  { dir: "lib/python3.11", tag: "python", share: 0.08 },
  { dir: "share/perl", tag: "perl", share: 0.04 },
  { dir: "share/doc", tag: "doc", share: 0.1 },
  { dir: "include", tag: "include", share: 0.1 },
  { dir: "share/man", tag: "man", share: 0.03 },
  { dir: "share/icons", tag: "icons", share: 0.05 },
];
/** Paths per corpus of 1 GB; a smaller corpus has fewer paths of the same sizes. */
const MASS_PATHS_PER_GB = 180;
/** Each path references its own out path and these earlier ones (as in the synthetic closure). */
const MASS_REFERENCE_OFFSETS = [1, 3, 17];

/**
 * Where a Debian file names a system path, a Nix one names a store path: each occurrence of
 * these prefixes becomes `/nix/store/<hash>-<name>/` of the path itself or one it references
 * (round robin), so binaries get their interpreter and library paths, scripts their shebangs.
 */
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const SYSTEM_PREFIXES = [
  "/usr/lib/",
  "/usr/bin/",
  "/usr/share/",
  "/usr/include/",
  "/lib64/",
  "/bin/",
];

export interface MassCorpus {
  readonly pairs: Pair[];
  readonly paths: number;
  readonly narBytes: number;
  readonly references: number;
}

/** Builds (or reuses) the mass rebuild of about `megabytes` MB of NAR under `root`. */
export async function massRebuild(root: string, megabytes: number): Promise<MassCorpus> {
  const dir = join(root, `mass-${megabytes}mb-v2`);
  const manifestFile = join(dir, "manifest.json");
  if (existsSync(manifestFile)) {
    return JSON.parse(await readFile(manifestFile, "utf8")) as MassCorpus;
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const paths = Math.max(MASS_SOURCES.length, Math.round((MASS_PATHS_PER_GB * megabytes) / 1000));
  const slices = await planMass(megabytes * MB, paths);
  const hashOf = (side: string, i: number): string =>
    nix32Encode(Sha256.of(`nixship-bench-delta:${side}:${i}`).bytes).slice(0, 32);
  const storePath = (side: string, i: number): string =>
    `/nix/store/${hashOf(side, i)}-${slices[i]?.name ?? "?"}`;
  const pairs: Pair[] = [];
  let narBytes = 0;
  let references = 0;
  for (const [i, slice] of slices.entries()) {
    const refs = [i, ...MASS_REFERENCE_OFFSETS.map((o) => i - o).filter((j) => j >= 0)];
    const nars: string[] = [];
    for (const side of ["before", "after"]) {
      const tree = join(dir, "tree", side);
      await rm(tree, { recursive: true, force: true });
      const targets = refs.map((j) => Buffer.from(`${storePath(side, j)}/`));
      let next = 0;
      for (const file of slice.files) {
        const data = await readFile(join("/usr", file.path));
        const rewritten = rewritePrefixes(data, () => {
          const t = targets[next % targets.length] as Buffer;
          next++;
          return t;
        });
        // A Nix-built ELF file carries its RUNPATH (its own lib/ and its dependencies'), where
        // Debian's have none: appended here, as patchelf appends what no longer fits.
        const elf = data.subarray(0, 4).equals(ELF_MAGIC);
        const runpath = elf
          ? Buffer.from(`${refs.map((j) => `${storePath(side, j)}/lib`).join(":")}\0`)
          : undefined;
        const bytes = runpath ? Buffer.concat([rewritten.bytes, runpath]) : rewritten.bytes;
        if (side === "after") references += rewritten.count + (runpath ? refs.length : 0);
        const out = join(tree, file.path);
        await mkdir(join(out, ".."), { recursive: true });
        await writeFile(out, bytes, { mode: file.executable ? 0o555 : 0o444 });
      }
      // Every Nix package records what it depends on somewhere; here in nix-support/.
      await mkdir(join(tree, "nix-support"), { recursive: true });
      await writeFile(
        join(tree, "nix-support", "depends"),
        `${refs.map((j) => storePath(side, j)).join("\n")}\n`,
      );
      const nar = join(dir, `${String(i).padStart(3, "0")}-${side}.nar`);
      await writeNarFile(tree, nar);
      if (side === "after") narBytes += (await lstat(nar)).size;
      nars.push(nar);
    }
    pairs.push({
      corpus: "mass rebuild",
      name: slice.name,
      detail: `${slice.files.length} files`,
      baseNar: nars[0] as string,
      targetNar: nars[1] as string,
    });
  }
  await rm(join(dir, "tree"), { recursive: true, force: true });
  const corpus: MassCorpus = { pairs, paths: pairs.length, narBytes, references };
  await writeFile(manifestFile, `${JSON.stringify(corpus, null, 1)}\n`);
  return corpus;
}

/** `data` with each system prefix replaced by the next store path `next` gives. */
function rewritePrefixes(data: Buffer, next: () => Buffer): { bytes: Buffer; count: number } {
  const needles = SYSTEM_PREFIXES.map((p) => Buffer.from(p));
  const parts: Buffer[] = [];
  let count = 0;
  let from = 0;
  // Scans for '/' and tries each prefix there: one pass, bounded by the file's length.
  for (let at = data.indexOf(0x2f, from); at !== -1; at = data.indexOf(0x2f, at + 1)) {
    const needle = needles.find(
      (n) => at + n.length <= data.length && data.compare(n, 0, n.length, at, at + n.length) === 0,
    );
    if (needle === undefined) continue;
    parts.push(data.subarray(from, at), next());
    count++;
    from = at + needle.length;
    at = from - 1;
  }
  if (count === 0) return { bytes: data, count };
  parts.push(data.subarray(from));
  return { bytes: Buffer.concat(parts), count };
}

interface MassFile {
  readonly path: string;
  readonly size: number;
  readonly executable: boolean;
}

/** Picks files from /usr, each source its share of `bytes`, cut into about `paths` slices. */
async function planMass(
  bytes: number,
  paths: number,
): Promise<{ name: string; files: MassFile[] }[]> {
  const slices: { name: string; files: MassFile[] }[] = [];
  for (const source of MASS_SOURCES) {
    const budget = bytes * source.share;
    const files = await pickFiles(source.dir, budget);
    const count = Math.max(1, Math.round(paths * source.share));
    const per = files.reduce((s, f) => s + f.size, 0) / count;
    let current: MassFile[] = [];
    let size = 0;
    const close = (): void => {
      const n = String(slices.length).padStart(3, "0");
      slices.push({ name: `bench-${source.tag}-${n}-1.0`, files: current });
      current = [];
      size = 0;
    };
    for (const file of files) {
      current.push(file);
      size += file.size;
      if (size >= per) close();
    }
    if (current.length > 0) close();
  }
  return slices;
}

/** Regular files under /usr/DIR in name order, up to `budget` bytes, none over a quarter of it. */
async function pickFiles(dir: string, budget: number): Promise<MassFile[]> {
  const picked: MassFile[] = [];
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join("/usr", rel), { withFileTypes: true }).catch(() => []);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (bytes >= budget) return;
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const st = await lstat(join("/usr", path));
        if (bytes + st.size > budget || st.size > budget / 4) continue;
        bytes += st.size;
        picked.push({ path, size: st.size, executable: (st.mode & 0o111) !== 0 });
      }
    }
  };
  await walk(dir);
  return picked;
}

// ---------------------------------------------------------------------------------------------
// (b) Real Debian 12 updates: each update is one store path holding the debs a Nix package of
// it would hold in one output (systemd with its shared library, python with its standard
// library), both versions downloaded from Debian's mirror with apt.

interface Update {
  readonly name: string;
  /** The debs of the old and the new store path: [package, version]. */
  readonly old: readonly (readonly [string, string])[];
  readonly new: readonly (readonly [string, string])[];
}

/** The updates measured; a Nix output holds what Debian splits into these debs. */
export const DEBIAN_UPDATES: readonly Update[] = [
  {
    name: "linux-image 6.1.176 -> 6.1.192",
    old: [["linux-image-6.1.0-50-amd64", "6.1.176-1"]],
    new: [["linux-image-6.1.0-56-amd64", "6.1.192-2"]],
  },
  {
    name: "libc6 2.36-9+deb12u7 -> u14",
    old: [["libc6", "2.36-9+deb12u7"]],
    new: [["libc6", "2.36-9+deb12u14"]],
  },
  {
    name: "libssl3 3.0.17 -> 3.0.22",
    old: [["libssl3", "3.0.17-1~deb12u2"]],
    new: [["libssl3", "3.0.22-1~deb12u2"]],
  },
  ...group(
    "systemd 252.38 -> 252.39",
    ["systemd", "libsystemd-shared", "libsystemd0"],
    "252.38-1~deb12u1",
    "252.39-1~deb12u2",
  ),
  ...group(
    "python3.11 3.11.2-6+deb12u8 -> u9",
    ["python3.11", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib"],
    "3.11.2-6+deb12u8",
    "3.11.2-6+deb12u9",
  ),
  ...group(
    "nodejs 18.20.4 deb12u2 -> u3",
    ["nodejs", "libnode108"],
    "18.20.4+dfsg-1~deb12u2",
    "18.20.4+dfsg-1~deb12u3",
  ),
];

function group(
  name: string,
  debs: readonly string[],
  oldVersion: string,
  newVersion: string,
): Update[] {
  return [
    {
      name,
      old: debs.map((d) => [d, oldVersion] as const),
      new: debs.map((d) => [d, newVersion] as const),
    },
  ];
}

/** The versions of `pkg` Debian's mirror offers (apt-cache madison), newest first. */
async function mirrorVersions(pkg: string): Promise<string[]> {
  const out = await output("apt-cache", ["madison", pkg]);
  return [
    ...new Set(
      out
        .split("\n")
        .map((l) => l.split("|")[1]?.trim() ?? "")
        .filter((v) => v !== ""),
    ),
  ];
}

/**
 * Downloads (once) and unpacks each update's debs into a tree per side, serialised as NARs
 * under `root`. A version the mirror lacks is replaced by the nearest one it has (printed).
 */
export async function debianUpdates(root: string, log: (line: string) => void): Promise<Pair[]> {
  const debs = join(root, "debs");
  const nars = join(root, "debian-nars");
  await mkdir(debs, { recursive: true });
  await mkdir(nars, { recursive: true });
  const pairs: Pair[] = [];
  for (const update of DEBIAN_UPDATES) {
    const sides: string[] = [];
    const chosen: string[] = [];
    for (const [side, wanted] of [
      ["old", update.old],
      ["new", update.new],
    ] as const) {
      const resolved: [string, string][] = [];
      for (const [pkg, version] of wanted) {
        const offered = await mirrorVersions(pkg);
        const v = offered.includes(version) ? version : nearest(offered, version, side);
        if (v === undefined) throw new Error(`Debian's mirror offers no version of ${pkg}`);
        if (v !== version) log(`  ${pkg} ${version} is not on the mirror: took ${v}`);
        resolved.push([pkg, v]);
      }
      chosen.push(resolved.map(([p, v]) => `${p}=${v}`).join(" "));
      const key = resolved
        .map(([p, v]) => `${p}_${v}`)
        .join("+")
        .replace(/[^A-Za-z0-9._+~-]/g, "_");
      const nar = join(nars, `${key}.nar`);
      if (!existsSync(nar)) {
        const files = resolved.map(([p, v]) =>
          join(debs, `${p}_${v.replace(/:/g, "%3a")}_amd64.deb`),
        );
        const missing = resolved.filter((_, i) => !existsSync(files[i] as string));
        if (missing.length > 0) {
          log(`  apt-get download ${missing.map(([p, v]) => `${p}=${v}`).join(" ")}`);
          await output("apt-get", ["download", ...missing.map(([p, v]) => `${p}=${v}`)], {
            cwd: debs,
          });
        }
        const tree = join(nars, `${key}.tree`);
        await rm(tree, { recursive: true, force: true });
        await mkdir(tree);
        for (const file of files) await output("dpkg-deb", ["-x", file, tree]);
        await writeNarFile(tree, nar);
        await rm(tree, { recursive: true, force: true });
      }
      sides.push(nar);
    }
    pairs.push({
      corpus: "debian",
      name: update.name,
      detail: `${chosen[0]} -> ${chosen[1]}`,
      baseNar: sides[0] as string,
      targetNar: sides[1] as string,
    });
  }
  return pairs;
}

/**
 * The offered version nearest to `version` (ordered as Nix orders versions, close enough for
 * Debian's): for the old side the newest below it, else the oldest; for the new side the newest.
 */
function nearest(
  offered: readonly string[],
  version: string,
  side: "old" | "new",
): string | undefined {
  const ascending = [...offered].sort(compareVersions);
  if (side === "new") return ascending.at(-1);
  return ascending.filter((v) => compareVersions(v, version) < 0).at(-1) ?? ascending[0];
}

// ---------------------------------------------------------------------------------------------
// (c) The lab's example change, web-v1 -> web-v2 (examples/flake.nix), built by the local Nix.

export const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));

export interface LabChange {
  /** The two systems, built in the local store. */
  readonly v1: string;
  readonly v2: string;
  /** Paths web-v2 needs that web-v1's closure lacks. */
  readonly fetched: readonly string[];
  /** Pairs by the design's rule (a base of the same package name). */
  readonly byName: Pair[];
  /** Pairs when the system's own tag is taken off the names (v1/v2), for the delta sizes. */
  readonly byTag: Pair[];
}

export async function labChange(root: string, env: NodeJS.ProcessEnv): Promise<LabChange> {
  const built = JSON.parse(
    await output(
      "nix",
      ["build", "--no-link", "--json", `path:${EXAMPLES}#web-v1`, `path:${EXAMPLES}#web-v2`],
      { env },
    ),
  ) as { outputs: { out: string } }[];
  const [v1, v2] = built.map((b) => b.outputs.out);
  const closure = async (p: string | undefined): Promise<string[]> =>
    (await output("nix-store", ["-qR", p ?? ""], { env })).split("\n").filter((l) => l);
  const have = await closure(v1);
  const fetched = (await closure(v2)).filter((p) => !have.includes(p));
  const dir = join(root, "lab-nars");
  await mkdir(dir, { recursive: true });
  const narOf = async (path: string): Promise<string> => {
    const file = join(dir, `${path.slice("/nix/store/".length)}.nar`);
    if (!existsSync(file)) await writeNarFile(path, file);
    return file;
  };
  const nameOf = (p: string): string => parsePackageName(p.slice("/nix/store/".length + 33)).name;
  const pairsBy = async (key: (p: string) => string): Promise<Pair[]> => {
    const pairs: Pair[] = [];
    for (const target of fetched) {
      const base = have.find((p) => key(p) === key(target));
      if (base === undefined) continue;
      pairs.push({
        corpus: "lab example",
        name: target.slice("/nix/store/".length + 33),
        detail: `${base.slice(11)} -> ${target.slice(11)}`,
        baseNar: await narOf(base),
        targetNar: await narOf(target),
        storePaths: { base, target },
      });
    }
    return pairs;
  };
  return {
    v1: v1 ?? "",
    v2: v2 ?? "",
    fetched,
    byName: await pairsBy(nameOf),
    byTag: await pairsBy((p) => nameOf(p).replace(/-v[12]$/, "")),
  };
}

export interface OutputOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin (else it reads nothing). */
  readonly input?: Buffer;
  /** The command is killed past this (default 15 minutes). */
  readonly timeoutMs?: number;
}

/** Runs a command to its end, within its deadline; its stdout, or an error with stderr's end. */
export async function output(
  command: string,
  args: readonly string[],
  options: OutputOptions = {},
): Promise<string> {
  const { cwd, env = process.env, input, timeoutMs = 15 * 60_000 } = options;
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      cwd,
      env,
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    proc.stdout?.on("data", (d: Buffer) => out.push(d));
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    if (input !== undefined) {
      proc.stdin?.on("error", () => {});
      proc.stdin?.end(input);
    }
    const timer = setTimeout(() => proc.kill(), timeoutMs);
    proc.on("error", reject);
    proc.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else
        reject(new Error(`'${command} ${args.slice(0, 4).join(" ")}' exited ${code}\n${stderr}`));
    });
  });
}
