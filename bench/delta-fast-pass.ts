// Part of `npm run bench:delta` (`--only fastpass`): a deploy's fast pass over the mass rebuild's
// pairs, reading each pair's NARs from the cache (decompressed and hashed on the deployer's main
// thread) against dumping them from the deployer's store (on worker threads), alternating. The
// corpus's NARs become real store paths of this machine's store (`nix-store --restore`, then
// `--add`), `nixship push` puts them in a directory cache, and the real `computeDeltas` runs with
// the deploy's own fast-pass settings (FAST_PASS), each run on a fresh copy of that cache.

import { writeFileSync } from "node:fs";
import { cp, mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { computeDeltas, type DeltaTally } from "../src/cache/delta-compute.js";
import type { DeltaPair } from "../src/cache/delta-publish.js";
import { queryClosure } from "../src/cache/local-nix.js";
import { FAST_PASS, narWriterFor } from "../src/deploy/delta-worker.js";
import { formatSecretKey, generateSecretKey, parseSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import type { Pair } from "./delta-corpora.js";
import { median } from "./stats.js";
import { timed } from "./timed.js";

const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));

export type FastPassSource = "cache" | "store";

export interface FastPassRun {
  readonly source: FastPassSource;
  readonly seconds: number;
  /** The bench process's CPU (its threads) and its children's (zstd), seconds. */
  readonly cpuSeconds: number;
  readonly tally: DeltaTally;
}

export interface FastPassSetup {
  readonly root: string;
  readonly pairs: readonly Pair[];
  readonly rounds: number;
  readonly env: NodeJS.ProcessEnv;
  readonly log: (line: string) => void;
}

/** This process's CPU with its reaped children's, in seconds (/proc/self/stat, clock ticks). */
async function cpuWithChildren(): Promise<number> {
  const stat = await readFile("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the command.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return ticks / 100;
}

async function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const r = await timed(command, args, env, 600);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Alternates the two ways `rounds` times; the store paths it added are deleted at the end. */
export async function fastPassBench(setup: FastPassSetup): Promise<FastPassRun[]> {
  const { root, env, log } = setup;
  const work = join(root, `fastpass-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(join(work, "trees"), { recursive: true });
  const keyFile = join(work, "cache.sec");
  writeFileSync(keyFile, formatSecretKey(generateSecretKey("bench-fastpass-1")), { mode: 0o600 });
  const key = parseSecretKey(await readFile(keyFile, "utf8"));
  const added: StorePath[] = [];
  try {
    log(`  adding the ${setup.pairs.length} pairs' NARs to this machine's store...`);
    const pairs: DeltaPair[] = [];
    for (const [i, pair] of setup.pairs.entries()) {
      const paths: StorePath[] = [];
      for (const [side, nar] of [
        ["base", pair.baseNar],
        ["target", pair.targetNar],
      ] as const) {
        const tree = join(work, "trees", `p${i}-${side}`);
        await run("sh", ["-c", 'nix-store --restore "$1" < "$2"', "sh", tree, nar], env);
        const path = (await run("nix-store", ["--add", tree], env)).trim() as StorePath;
        paths.push(path);
        added.push(path);
      }
      pairs.push({ base: paths[0] as StorePath, target: paths[1] as StorePath });
    }
    await rm(join(work, "trees"), { recursive: true, force: true });
    const clean = join(work, "cache-clean");
    log("  pushing them to a directory cache with nixship push...");
    await run(
      process.execPath,
      [NIXSHIP_BIN, "push", ...added, "--to", `file://${clean}`, "--key", keyFile, "--json"],
      env,
    );
    const records = new Map(
      (await queryClosure(added)).map((i) => [i.path, { narHash: i.narHash, narSize: i.narSize }]),
    );
    const runs: FastPassRun[] = [];
    for (let round = 1; round <= setup.rounds; round++) {
      for (const source of ["cache", "store"] as const) {
        const dir = join(work, "cache");
        await rm(dir, { recursive: true, force: true });
        await cp(clean, dir, { recursive: true });
        const store = await openStore(`file://${dir}`);
        const writer = source === "store" ? narWriterFor(records) : undefined;
        const cpu0 = await cpuWithChildren();
        const t0 = performance.now();
        try {
          const tally = await computeDeltas(store, key, pairs, {
            ...FAST_PASS,
            tmpDir: work,
            ...(writer === undefined
              ? {}
              : { storeNar: (path: StorePath) => records.get(path), narWriter: writer }),
          });
          const seconds = (performance.now() - t0) / 1000;
          await writer?.close();
          const cpuSeconds = (await cpuWithChildren()) - cpu0;
          runs.push({ source, seconds, cpuSeconds, tally });
          log(
            `  round ${round}, from the ${source}: ${seconds.toFixed(2)} s, ${cpuSeconds.toFixed(2)} CPU-s, ` +
              `${tally.published} published, ${tally.failed} failed, ${tally.deltaBytes} bytes of deltas`,
          );
        } finally {
          await writer?.close();
          await store.close();
        }
      }
    }
    return runs;
  } finally {
    await rm(work, { recursive: true, force: true });
    if (added.length > 0) {
      await timed("nix-store", ["--delete", ...added], env, 600).catch(() => undefined);
    }
  }
}

/** Medians of each way, and the ratio. */
export function fastPassReport(runs: readonly FastPassRun[]): string {
  const of = (source: FastPassSource) => runs.filter((r) => r.source === source);
  const line = (source: FastPassSource, what: string) => {
    const rs = of(source);
    const s = rs.map((r) => r.seconds);
    const c = rs.map((r) => r.cpuSeconds);
    return `  ${what}: ${median(s).toFixed(2)} s (${Math.min(...s).toFixed(2)}-${Math.max(...s).toFixed(2)}), ${median(c).toFixed(2)} CPU-s (${Math.min(...c).toFixed(2)}-${Math.max(...c).toFixed(2)})`;
  };
  const ratio =
    median(of("cache").map((r) => r.seconds)) / median(of("store").map((r) => r.seconds));
  return [
    "The fast pass over the mass rebuild's pairs (medians over the rounds; CPU: this process's threads and its zstd children):",
    line("cache", "NARs read from the cache (main thread)"),
    line("store", "NARs dumped from the deployer's store (worker threads)"),
    `  the store's way ${ratio.toFixed(2)}x faster`,
  ].join("\n");
}
