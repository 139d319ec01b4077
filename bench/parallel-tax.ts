// What it costs this machine to keep every core busy (`npm run bench:push` prints it): push's
// own NAR writers (cache/nar-pool.ts) write the whole closure as zstd files, once with one
// worker thread and once with two at the same time, back to back. The work is the same, so any
// extra CPU the two-thread run takes is the machine's, not the code's: on a VM whose vCPUs
// share physical cores or caches with other guests, a core does less per second while its
// neighbour is busy. `nix copy` works on one core, so this tax is part of any CPU comparison
// between it and a push that uses both.
import { mkdtemp, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { DEFAULT_LEVEL } from "../src/cache/compression.js";
import { NarPool } from "../src/cache/nar-pool.js";
import { mapLimit } from "../src/util/pool.js";
import { median } from "./stats.js";

export interface ParallelTax {
  /** Median CPU seconds of the whole process, over `rounds` runs each. */
  readonly oneThread: number;
  readonly twoThreads: number;
  readonly oneThreadWall: number;
  readonly twoThreadsWall: number;
  readonly rounds: number;
}

interface Run {
  readonly cpu: number;
  readonly wall: number;
}

/**
 * Writes every path's zstd NAR into a fresh directory under `work` with `threads` writers,
 * and returns this process's CPU seconds (all threads) and wall seconds for it.
 */
async function writeAll(paths: readonly string[], work: string, threads: number): Promise<Run> {
  const dir = await mkdtemp(join(work, "tax-"));
  const from = process.cpuUsage();
  const started = performance.now();
  const pool = new NarPool(threads);
  try {
    await mapLimit(paths, threads, (path) =>
      pool.write({
        path,
        out: join(dir, `${basename(path)}.nar.zst`),
        level: DEFAULT_LEVEL.zstd,
        label: path,
      }),
    );
  } finally {
    await pool.close();
  }
  const used = process.cpuUsage(from);
  const run = { cpu: (used.user + used.system) / 1e6, wall: (performance.now() - started) / 1000 };
  await rm(dir, { recursive: true, force: true });
  return run;
}

/**
 * One unmeasured run first (memory freed earlier costs its first toucher on this VM; see
 * push.ts), then `rounds` rounds of one thread and two threads, in alternating order.
 */
export async function measureParallelTax(
  paths: readonly string[],
  work: string,
  rounds = 3,
): Promise<ParallelTax> {
  await writeAll(paths, work, 2);
  const one: Run[] = [];
  const two: Run[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const threads of r % 2 === 0 ? [1, 2] : [2, 1]) {
      (threads === 1 ? one : two).push(await writeAll(paths, work, threads));
    }
  }
  return {
    oneThread: median(one.map((x) => x.cpu)),
    twoThreads: median(two.map((x) => x.cpu)),
    oneThreadWall: median(one.map((x) => x.wall)),
    twoThreadsWall: median(two.map((x) => x.wall)),
    rounds,
  };
}

export function reportParallelTax(t: ParallelTax): string {
  const tax = t.twoThreads / t.oneThread - 1;
  return [
    `Parallel tax: push's NAR writers over the whole closure (zstd), medians of ${t.rounds} runs each:`,
    `  one worker thread:   ${t.oneThread.toFixed(2)} CPU s, ${t.oneThreadWall.toFixed(2)} s wall`,
    `  two, at once:        ${t.twoThreads.toFixed(2)} CPU s, ${t.twoThreadsWall.toFixed(2)} s wall`,
    `  the same work costs ${(100 * tax).toFixed(1)}% more CPU when both cores run. That is this`,
    "  machine's, not the code's; nix copy runs on one core and does not pay it, so compare",
    "  nix copy's CPU with `nixship 1 job` for the code's own efficiency.",
  ].join("\n");
}
