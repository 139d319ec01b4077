// The push benchmark (`npm run bench:push`): `nixship push` against `nix copy` into fresh file://
// caches, zstd and uncompressed, on a ~1 GB synthetic closure; prints time, CPU, MB/s, RSS and
// size; the CPU profile by stage (push-profile.ts); then the small changes
// (push-incremental.ts): nothing new, and one new path.
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm, statfs } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { PushSummary } from "../src/cache/push.js";
import { nixCopyFromArgs } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { type CurrentNixStore, prepareCurrentNixStore } from "./current-nix-store.js";
import { type DiskWrite, measureDiskWrite, reportDiskFloor } from "./disk-floor.js";
import { hasGnuTime, measure } from "./measure.js";
import { measureParallelTax, reportParallelTax } from "./parallel-tax.js";
import { reportIncremental, runIncremental } from "./push-incremental.js";
import { profileStages, reportProfile } from "./push-profile.js";
import {
  COMPRESSIONS,
  type Compression,
  figure,
  isNixship,
  report,
  reportRounds,
  type Sample,
  summarise,
  TOOLS,
  type Tool,
} from "./report.js";
import { mb } from "./stats.js";
import {
  buildSyntheticClosure,
  type ClosureStats,
  closureStats,
  warmPageCache,
} from "./synthetic-closure.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
// Never a substituter: nothing here may leave the machine.
const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      // A subset, to measure the comparison that matters in less time on a shared machine.
      tools: { type: "string", default: TOOLS.join(",") },
      compressions: { type: "string", default: COMPRESSIONS.join(",") },
      // Only the pushes: no stage profile, parallel tax, check with Nix or small pushes.
      quick: { type: "boolean", default: false },
    },
  });
  const runs = Math.max(2, Number(values.runs) || 3);
  const tools = pickList("--tools", values.tools, TOOLS);
  const compressions = pickList("--compressions", values.compressions, COMPRESSIONS);
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-"));
  const cleanUp = (): void => rmSync(work, { recursive: true, force: true });
  process.once("SIGINT", () => {
    cleanUp();
    process.exit(130);
  });
  try {
    await printMachine(work);
    console.log("\nBuilding the synthetic closure (reused when already built)...");
    const top = await buildSyntheticClosure(ENV);
    const stats = await closureStats(top, ENV);
    console.log(
      `closure ${top}\n  ${stats.paths.length} store paths, NAR ${mb(stats.narBytes)}, ` +
        `${stats.files} files, ${stats.symlinks} symlinks, ${stats.dirs} directories`,
    );

    const secret = join(work, "bench.sec");
    const pub = (
      await output(process.execPath, [
        NIXSHIP,
        "key",
        "generate",
        "--name",
        "nixship-bench",
        "--out",
        secret,
      ])
    ).trim();

    console.log(
      "\nThe page cache is not dropped (that would disturb the whole machine); instead every path" +
        "\nis read once first (nix-store --export > /dev/null), so all runs read from the page cache.",
    );
    await warmPageCache(stats.paths, ENV);
    console.log("\nCopying the closure into a store of the current Nix's own...");
    const current = await prepareCurrentNixStore(top, work, ENV);
    console.log(`nix copy current: ${current.version}, its /nix in ${current.nixRoot}`);

    const { samples, kept, diskWrites } = await runVariants(
      runs,
      tools,
      compressions,
      stats,
      secret,
      work,
      current,
    );
    console.log(`  (${loadAverage()})`);
    const variants = summarise(samples);
    console.log(`\n${report(variants, stats)}`);
    console.log(`\n${reportRounds(samples)}`);
    if (diskWrites.length > 0) {
      console.log(
        `\n${reportDiskFloor(diskWrites, (c) =>
          figure(variants, "nixship nosync", c, (v) => v.medianSeconds),
        )}`,
      );
    }
    if (values.quick) return;
    const profile = await profileStages(stats.paths, top, work, NIXSHIP, ENV);
    const cpu = (tool: Tool) => ({
      zstd: figure(variants, tool, "zstd", (v) => v.medianCpuSeconds),
      none: figure(variants, tool, "none", (v) => v.medianCpuSeconds),
    });
    console.log(`\n${reportProfile(profile, cpu("nix copy"), cpu("nixship"))}`);
    console.log(`\n${reportParallelTax(await measureParallelTax(stats.paths, work))}`);
    if (kept) await checkWithNix(kept, join(work, "verify-store"), top, pub);
    if (kept) {
      const small = await runIncremental(runs, {
        base: kept,
        top,
        paths: stats.paths.length,
        secret,
        work,
        nixship: NIXSHIP,
        env: ENV,
      });
      console.log(`  (${loadAverage()})`);
      console.log(`\n${reportIncremental(small, stats.paths.length)}`);
    }
  } finally {
    cleanUp();
  }
}

/** Every variant `runs` times, the two tools in turn first; keeps one nixship zstd cache. */
async function runVariants(
  runs: number,
  tools: readonly Tool[],
  compressions: readonly Compression[],
  stats: ClosureStats,
  secret: string,
  work: string,
  current: CurrentNixStore,
): Promise<{ samples: Sample[]; kept: string | undefined; diskWrites: DiskWrite[] }> {
  console.log(
    `\n${runs} runs per variant, tools alternating order; each into a fresh cache directory.` +
      "\nEach measured run follows an unmeasured one of the same variant, whose cache is deleted" +
      "\nfirst: this VM gives freed memory back to its host (free page reporting), and the first" +
      "\nprocess to touch it again pays about 1.5 s of system time per GB, so without the warm-up" +
      "\na run's cost would depend on how much memory the run before it freed.",
  );
  const samples: Sample[] = [];
  const diskWrites: DiskWrite[] = [];
  let kept: string | undefined;
  for (let r = 0; r < runs; r++) {
    for (const compression of compressions) {
      const order = r % 2 === 0 ? tools : [...tools].reverse();
      for (const tool of order) {
        const warmUp = await mkdtemp(join(work, "warm-up-"));
        await pushOnce(tool, compression, warmUp, secret, stats, current, r);
        await rm(warmUp, { recursive: true, force: true });
        const cache = await mkdtemp(join(work, "cache-"));
        const sample = await pushOnce(tool, compression, cache, secret, stats, current, r);
        samples.push(sample);
        console.log(
          `  run ${r + 1}/${runs}  ${tool.padEnd(16)}  ${compression.padEnd(4)}  ${sample.m.seconds.toFixed(2)} s` +
            `  ${sample.m.cpuSeconds?.toFixed(2) ?? "?"} CPU s  ${mbps(stats.narBytes, sample.m.seconds)}` +
            `  tree RSS ${mb(sample.m.treePeakRssBytes)}  load ${sample.load.toFixed(2)}`,
        );
        if (tool === "nixship" && compression === "zstd" && kept === undefined) kept = cache;
        else await rm(cache, { recursive: true, force: true });
        if (tool === "nixship") {
          const disk = await measureDiskWrite(work, compression, sample.outputBytes);
          diskWrites.push(disk);
          console.log(
            `           disk: ${mb(disk.bytes)} written and flushed in ${disk.seconds.toFixed(2)} s`,
          );
        }
      }
    }
  }
  return { samples, kept, diskWrites };
}

async function pushOnce(
  tool: Tool,
  compression: Compression,
  cache: string,
  secret: string,
  stats: ClosureStats,
  current: CurrentNixStore,
  round: number,
): Promise<Sample> {
  // The 1-minute load average as the run starts: other work on the machine, and the runs
  // before this one.
  const load = loadavg()[0] ?? Number.NaN;
  const copyArgs = [
    "copy",
    "--to",
    `file://${cache}?secret-key=${secret}&compression=${compression}`,
    stats.top,
  ];
  const [file, args]: [string, string[]] =
    tool === "nix copy"
      ? ["nix", copyArgs]
      : tool === "nix copy current"
        ? current.nix(copyArgs)
        : [
            process.execPath,
            [
              NIXSHIP,
              "push",
              stats.top,
              "--to",
              `file://${cache}${tool === "nixship nosync" ? "?fsync=false" : ""}`,
              "--key",
              secret,
              "--compression",
              compression,
              "--json",
              ...(tool === "nixship 1 job" ? ["--jobs", "1"] : []),
            ],
          ];
  const m = await measure(file, args, ENV);
  if (m.code !== 0) throw new Error(`${tool} (${compression}) exited ${m.code}:\n${m.stderrTail}`);
  if (isNixship(tool)) {
    const summary = JSON.parse(m.stdout) as PushSummary;
    if (summary.pushed !== stats.paths.length || summary.narBytes !== stats.narBytes) {
      throw new Error(`nixship pushed ${summary.pushed} paths, ${summary.narBytes} NAR bytes`);
    }
  }
  const narinfos = (await readdir(cache)).filter((f) => f.endsWith(".narinfo")).length;
  if (narinfos !== stats.paths.length) {
    throw new Error(`${tool} wrote ${narinfos} narinfos for ${stats.paths.length} paths`);
  }
  return { tool, compression, m, outputBytes: await treeBytes(cache), round, load };
}

/** `nix copy --from` the nixship cache into an empty store, trusting only our key. */
async function checkWithNix(cache: string, store: string, top: string, pub: string): Promise<void> {
  const args = nixCopyFromArgs(`file://${cache}`, store, pub, top);
  const m = await measure("nix", args, ENV);
  const ok = m.code === 0;
  console.log(
    `\nCorrectness: nix copy --from the nixship zstd cache into a fresh store, require-sigs: ${ok ? "OK" : "FAIL"}` +
      ` (${m.seconds.toFixed(1)} s)${ok ? "" : `\n${m.stderrTail}`}`,
  );
  // Nix leaves the store's directories read-only.
  spawnSync("chmod", ["-R", "u+w", store]);
  await rm(store, { recursive: true, force: true });
  if (!ok) process.exitCode = 1;
}

async function printMachine(work: string): Promise<void> {
  const fs = await statfs(work);
  const nix = (await output("nix", ["--version"])).trim();
  const zstd = /v\d+\.\d+\.\d+/.exec(await output("zstd", ["--version"]))?.[0] ?? "?";
  console.log(
    `node ${process.version}, ${nix}, zstd ${zstd}, ${availableParallelism()} CPUs, ${loadAverage()}` +
      `\n${tmpdir()}: ${mb(fs.bavail * fs.bsize)} free` +
      (hasGnuTime() ? "" : "\n/usr/bin/time not found: only the sampled tree RSS is reported"),
  );
}

/** The names in a comma-separated `text`, each one of `known`, in the order given. */
function pickList<T extends string>(flag: string, text: string, known: readonly T[]): T[] {
  const names = text.split(",").map((n) => n.trim());
  const unknown = names.filter((n) => !(known as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(`${flag}: ${unknown.join(", ")} (one or more of: ${known.join(", ")})`);
  }
  return names as T[];
}

/** Other work on the machine skews the figures; the load average shows whether there was any. */
function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

function output(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { env: ENV, stdio: ["ignore", "pipe", "inherit"] });
    const out: Buffer[] = [];
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.on("error", reject);
    proc.on("close", (code) =>
      code === 0
        ? resolve(Buffer.concat(out).toString("utf8"))
        : reject(new Error(`${command} exited ${code}`)),
    );
  });
}

async function treeBytes(path: string): Promise<number> {
  const st = await lstat(path);
  if (!st.isDirectory()) return st.size;
  let sum = 0;
  for (const name of await readdir(path)) sum += await treeBytes(join(path, name));
  return sum;
}

function mbps(bytes: number, seconds: number): string {
  return `${(bytes / 1e6 / seconds).toFixed(1)} MB/s`;
}

await main();
