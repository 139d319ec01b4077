// `npm run bench:ceiling`: how fast can push's CPU work go at all? Serialises, hashes and
// compresses the synthetic closure into a discard sink (no cache, no disk writes), with the
// work on the main thread (as push does) and spread over worker threads, and prints the
// time a 2× lead over a measured `nix copy` would need. A diagnostic, not a test.
// Sizes libuv's thread pool exactly as the CLI does; must come before anything uses the pool.
import "../src/cli/threadpool.js";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { writeNar } from "../src/cache/nar-pipeline.js";
import type { Compression } from "../src/nix/narinfo.js";
import { mapLimit } from "../src/util/pool.js";
import { TEST_NIX_CONFIG } from "../test/support/nix-config.js";
import { buildSyntheticClosure, closureStats, warmPageCache } from "./synthetic-closure.js";

const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };
const discard = (): Writable => new Writable({ write: (_c, _e, done) => done() });

interface Timing {
  readonly seconds: number;
  readonly cpuSeconds: number;
}

async function timed(body: () => Promise<void>): Promise<Timing> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await body();
  const used = process.cpuUsage(cpu);
  return {
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (used.user + used.system) / 1e6,
  };
}

/** All paths on the main thread, `jobs` at a time: push's own arrangement. */
function onMainThread(
  paths: readonly string[],
  compression: Compression,
  jobs: number,
): Promise<Timing> {
  return timed(async () => {
    await mapLimit(paths, jobs, (p) => writeNar(p, discard(), { compression }));
  });
}

/** The same work handed out to `jobs` worker threads. */
function onWorkers(
  paths: readonly string[],
  compression: Compression,
  jobs: number,
): Promise<Timing> {
  return timed(async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: jobs }, async () => {
        const worker = new Worker(new URL(import.meta.url), { workerData: { compression } });
        await new Promise<void>((resolve, reject) => {
          const give = (): void => {
            if (next < paths.length) worker.postMessage(paths[next++]);
            else resolve();
          };
          worker.on("message", give);
          worker.on("error", reject);
          give();
        });
        await worker.terminate();
      }),
    );
  });
}

function nixCopySeconds(top: string, compression: Compression, work: string): number {
  const dir = join(work, `nix-copy-${compression}`);
  const started = performance.now();
  const r = spawnSync(
    "nix",
    ["copy", "--quiet", "--to", `file://${dir}?compression=${compression}`, top],
    { env: ENV },
  );
  if (r.status !== 0) throw new Error(`nix copy failed: ${r.stderr.toString()}`);
  rmSync(dir, { recursive: true, force: true });
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "nixship-ceiling-"));
  try {
    const top = await buildSyntheticClosure(ENV);
    const stats = await closureStats(top, ENV);
    await warmPageCache(stats.paths, ENV);
    const paths = [...stats.paths];
    const jobs = availableParallelism();
    console.log(
      `closure: ${paths.length} paths, ${(stats.narBytes / 1e6).toFixed(1)} MB of NAR; ${jobs} CPUs`,
    );
    console.log(
      "serialise + hash + compress into a discard sink (no storage at all), best of 2:\n",
    );
    for (const compression of ["zstd", "none"] as const) {
      const best = async (run: () => Promise<Timing>): Promise<Timing> => {
        const a = await run();
        const b = await run();
        return a.seconds <= b.seconds ? a : b;
      };
      const main = await best(() => onMainThread(paths, compression, jobs));
      const workers = await best(() => onWorkers(paths, compression, jobs));
      const peer = Math.min(
        nixCopySeconds(top, compression, work),
        nixCopySeconds(top, compression, work),
      );
      const show = (t: Timing): string =>
        `${t.seconds.toFixed(2)} s (CPU ${t.cpuSeconds.toFixed(2)} s)`;
      console.log(`${compression}:`);
      console.log(`  main thread, ${jobs} jobs:   ${show(main)}`);
      console.log(`  ${jobs} worker threads:      ${show(workers)}`);
      console.log(
        `  nix copy (whole push):  ${peer.toFixed(2)} s; a 2x lead needs a whole push under ${(peer / 2).toFixed(2)} s`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMainThread) {
  await main();
} else {
  const compression = (workerData as { compression: Compression }).compression;
  parentPort?.on("message", async (path: string) => {
    await writeNar(path, discard(), { compression });
    parentPort?.postMessage("done");
  });
}
