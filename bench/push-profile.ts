// The push's CPU profile by stage (`npm run bench:push` prints it): each stage of what a push
// worker does to a path, run alone on one thread over the whole closure, in CPU seconds per GB
// of NAR; beside them the CLI's start-up, its closure query, and nix copy's own total.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { FRAME_SIZE } from "../src/cache/nar-check.js";
import { ZstdFrameCompressor } from "../src/cache/zstd.js";
import { dumpChunks } from "../src/nix/nar-encode.js";
import { measure } from "./measure.js";
import { table } from "./stats.js";

export interface StageProfile {
  readonly narBytes: number;
  /** CPU seconds of each stage, summed over the closure. */
  readonly stages: readonly (readonly [stage: string, zstd: number, none: number])[];
  /** `nixship --version`: node and the CLI's modules loading. */
  readonly startup: number;
  /** `nix path-info --json --recursive`, the query push makes. */
  readonly query: number;
  /** `sync -f` of the cache's file system once the files are written (no fsync each). */
  readonly syncfs: { readonly cpu: number; readonly wall: number };
}

/** CPU seconds of this process (all its threads) since `from`. */
function cpuSince(from: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
}

/**
 * Runs the stages one path at a time, as a worker does, but timing each call on its own.
 * `work` is a directory on the same file system as the benchmark's caches.
 */
export async function profileStages(
  paths: readonly string[],
  top: string,
  work: string,
  nixship: string,
  env: NodeJS.ProcessEnv,
): Promise<StageProfile> {
  const out = await mkdtemp(join(work, "profile-"));
  try {
    const zstd = runStages(paths, out, "zstd");
    const none = runStages(paths, out, "none");
    const startup = (await measure(process.execPath, [nixship, "--version"], env)).cpuSeconds;
    const query = (await measure("nix", ["path-info", "--json", "--recursive", top], env))
      .cpuSeconds;
    // The unsynced files of the last run are what a group commit flushes.
    runStages(paths, out, "zstd", false);
    const sync = await measure("sync", ["-f", out], env);
    const stage = (name: string, key: keyof StageTimes): [string, number, number] => [
      name,
      zstd.times[key],
      none.times[key],
    ];
    return {
      narBytes: zstd.narBytes,
      stages: [
        stage("read and serialise (dumpChunks)", "serialise"),
        stage("NarHash (sha256 of the NAR)", "narHash"),
        stage("compression (zstd frames)", "compress"),
        stage("FileHash (sha256 of the file)", "fileHash"),
        stage("write (write(2) into the cache's fs)", "write"),
        stage("fsync each file", "fsync"),
      ],
      startup: startup ?? Number.NaN,
      query: query ?? Number.NaN,
      syncfs: { cpu: sync.cpuSeconds ?? Number.NaN, wall: sync.seconds },
    };
  } finally {
    spawnSync("chmod", ["-R", "u+w", out]);
    await rm(out, { recursive: true, force: true });
  }
}

interface StageTimes {
  serialise: number;
  narHash: number;
  compress: number;
  fileHash: number;
  write: number;
  fsync: number;
}

function runStages(
  paths: readonly string[],
  dir: string,
  compression: "zstd" | "none",
  fsync = true,
): { times: StageTimes; narBytes: number } {
  const times: StageTimes = {
    serialise: 0,
    narHash: 0,
    compress: 0,
    fileHash: 0,
    write: 0,
    fsync: 0,
  };
  const compressor = new ZstdFrameCompressor(3);
  let narBytes = 0;
  for (const [i, path] of paths.entries()) {
    const fd = openSync(join(dir, `${i}.nar${compression === "zstd" ? ".zst" : ""}`), "w");
    const narHash = createHash("sha256");
    const fileHash = createHash("sha256");
    const chunks = dumpChunks(path, { chunkSize: FRAME_SIZE, reuse: true });
    for (;;) {
      let t = process.cpuUsage();
      const next = chunks.next();
      times.serialise += cpuSince(t);
      if (next.done) break;
      const chunk = next.value;
      narBytes += chunk.length;
      t = process.cpuUsage();
      narHash.update(chunk);
      times.narHash += cpuSince(t);
      let file: Buffer = chunk;
      if (compression === "zstd") {
        t = process.cpuUsage();
        file = compressor.compress(chunk);
        times.compress += cpuSince(t);
      }
      if (compression === "zstd") {
        // Uncompressed, the file is the NAR: its FileHash is the NarHash (nar-file.ts).
        t = process.cpuUsage();
        fileHash.update(file);
        times.fileHash += cpuSince(t);
      }
      t = process.cpuUsage();
      for (let done = 0; done < file.length; ) done += writeSync(fd, file, done);
      times.write += cpuSince(t);
    }
    narHash.digest();
    fileHash.digest();
    const t = process.cpuUsage();
    if (fsync) fsyncSync(fd);
    times.fsync += cpuSince(t);
    closeSync(fd);
  }
  return { times, narBytes };
}

/** The profile as a table, per GB of NAR, beside nix copy's median CPU seconds per GB. */
export function reportProfile(
  p: StageProfile,
  nixCopyCpu: { readonly zstd: number; readonly none: number },
  nixshipCpu: { readonly zstd: number; readonly none: number },
): string {
  const gb = p.narBytes / 1e9;
  const perGb = (s: number) => (s / gb).toFixed(2);
  const sum = (pick: (s: readonly [string, number, number]) => number, withFsync: boolean) =>
    p.stages
      .filter(([name]) => withFsync || !name.startsWith("fsync"))
      .reduce((a, s) => a + pick(s), 0);
  const rows: string[][] = [["stage (one thread, alone)", "zstd CPU s/GB", "none CPU s/GB"]];
  for (const [name, z, n] of p.stages) {
    const notDone = name.startsWith("compression") || name.startsWith("FileHash");
    rows.push([name, perGb(z), notDone ? "-" : perGb(n)]);
  }
  rows.push([
    "sum of the stages without fsync",
    perGb(sum((s) => s[1], false)),
    perGb(sum((s) => s[2], false)),
  ]);
  rows.push([
    "the CLI's start-up and query (per push)",
    `${p.startup.toFixed(2)} + ${p.query.toFixed(2)} s`,
    `${p.startup.toFixed(2)} + ${p.query.toFixed(2)} s`,
  ]);
  rows.push([
    "nixship push, whole (median, default durability)",
    perGb(nixshipCpu.zstd),
    perGb(nixshipCpu.none),
  ]);
  rows.push(["nix copy, whole (median)", perGb(nixCopyCpu.zstd), perGb(nixCopyCpu.none)]);
  return [
    `CPU profile by stage, over the ${(p.narBytes / 1e6).toFixed(1)} MB closure (CPU seconds per GB of NAR):`,
    table(rows, 1),
    `  group commit instead of fsync each: one \`sync -f\` of the cache's file system after the`,
    `  zstd files were written cost ${p.syncfs.cpu.toFixed(2)} CPU s in its own process and ` +
      `${p.syncfs.wall.toFixed(2)} s of wall time;`,
    "  the kernel's flusher threads write the pages back, as they do later for nix copy, which",
    "  never syncs: fsync(2) writes them back in the caller's own CPU time instead.",
  ].join("\n");
}
