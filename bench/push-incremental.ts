// The small changes users push all day, measured against `nix copy` in the same run:
// into a cache that already holds the closure ("nothing new"), and into one that lacks only
// its top path ("1 new path"). Each run starts from a hard-linked copy of one full cache, so
// both tools find the same cache; neither changes a file it did not write.
import { spawnSync } from "node:child_process";
import { readFile, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { type Measurement, measure } from "./measure.js";
import { table } from "./stats.js";

export const INCREMENTAL_TOOLS = ["nixship", "nix copy"] as const;
export type IncrementalTool = (typeof INCREMENTAL_TOOLS)[number];
export const SCENARIOS = ["nothing new", "1 new path"] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface IncrementalSample {
  readonly tool: IncrementalTool;
  readonly scenario: Scenario;
  readonly m: Measurement;
}

export interface IncrementalSetup {
  /** A full zstd cache of the closure, made by nixship. */
  readonly base: string;
  readonly top: string;
  readonly paths: number;
  readonly secret: string;
  readonly work: string;
  readonly nixship: string;
  readonly env: NodeJS.ProcessEnv;
}

/** Every scenario `runs` times, the tools in alternating order. */
export async function runIncremental(
  runs: number,
  setup: IncrementalSetup,
): Promise<IncrementalSample[]> {
  console.log(
    `\nSmall changes: ${runs} runs each, into a hard-linked copy of a full zstd cache` +
      ` (${setup.paths} paths); "1 new path" lacks the closure's top path.`,
  );
  const samples: IncrementalSample[] = [];
  for (let r = 0; r < runs; r++) {
    for (const scenario of SCENARIOS) {
      const order = r % 2 === 0 ? INCREMENTAL_TOOLS : [...INCREMENTAL_TOOLS].reverse();
      for (const tool of order) {
        const cache = join(setup.work, `incremental-${r}-${samples.length}`);
        copyLinked(setup.base, cache);
        if (scenario === "1 new path") await removePath(cache, setup.top);
        const m = await pushInto(tool, cache, setup);
        if (m.code !== 0)
          throw new Error(`${tool} (${scenario}) exited ${m.code}:\n${m.stderrTail}`);
        if (!(await holds(cache, setup.top))) throw new Error(`${tool} did not push ${setup.top}`);
        samples.push({ tool, scenario, m });
        console.log(
          `  run ${r + 1}/${runs}  ${tool.padEnd(8)}  ${scenario.padEnd(11)}  ${m.seconds.toFixed(2)} s` +
            `  CPU ${m.cpuSeconds?.toFixed(2) ?? "?"} s`,
        );
        await rm(cache, { recursive: true, force: true });
      }
    }
  }
  return samples;
}

/** Medians per tool and scenario, the ratio, and the targets with PASS or MISS. */
export function reportIncremental(samples: readonly IncrementalSample[], paths: number): string {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor((s.length - 1) / 2)] as number;
  };
  const of = (tool: IncrementalTool, scenario: Scenario) => {
    const mine = samples.filter((x) => x.tool === tool && x.scenario === scenario);
    return {
      wall: median(mine.map((x) => x.m.seconds)),
      cpu: median(mine.map((x) => x.m.cpuSeconds ?? Number.NaN)),
    };
  };
  const rows: string[][] = [["scenario", "tool", "wall, median", "CPU s, median", "nix/nixship"]];
  const verdicts: string[] = [];
  for (const scenario of SCENARIOS) {
    const ours = of("nixship", scenario);
    const nix = of("nix copy", scenario);
    const ratio = nix.wall / ours.wall;
    rows.push([scenario, "nix copy", `${nix.wall.toFixed(2)} s`, nix.cpu.toFixed(2), ""]);
    rows.push([
      scenario,
      "nixship",
      `${ours.wall.toFixed(2)} s`,
      ours.cpu.toFixed(2),
      `${ratio.toFixed(2)}x`,
    ]);
    if (scenario === "1 new path") {
      verdicts.push(
        `1 new path of ${paths}: nixship >= 3x faster than nix copy: ${ratio.toFixed(2)}x ${ratio >= 3 ? "PASS" : "MISS"}`,
      );
    } else {
      verdicts.push(
        `nothing new: nixship under 0.5 s: ${ours.wall.toFixed(2)} s ${ours.wall < 0.5 ? "PASS" : "MISS"}`,
      );
    }
  }
  return `${table(rows, 2)}\n${verdicts.join("\n")}`;
}

function pushInto(
  tool: IncrementalTool,
  cache: string,
  setup: IncrementalSetup,
): Promise<Measurement> {
  return tool === "nixship"
    ? measure(
        process.execPath,
        [
          setup.nixship,
          "push",
          setup.top,
          "--to",
          `file://${cache}`,
          "--key",
          setup.secret,
          "--compression",
          "zstd",
          "--json",
        ],
        setup.env,
      )
    : measure(
        "nix",
        ["copy", "--to", `file://${cache}?secret-key=${setup.secret}&compression=zstd`, setup.top],
        setup.env,
      );
}

/** A copy of `from` whose files are hard links (cp -al): instant, and shares no writes. */
function copyLinked(from: string, to: string): void {
  const r = spawnSync("cp", ["-al", from, to], { timeout: 120_000 });
  if (r.status !== 0) throw new Error(`cp -al ${from} ${to} failed: ${r.stderr}`);
}

function narinfoFile(cache: string, path: string): string {
  return join(cache, `${path.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`);
}

/** Removes a path from a file:// cache: its narinfo and its NAR. */
async function removePath(cache: string, path: string): Promise<void> {
  const info = await readFile(narinfoFile(cache, path), "utf8");
  const url = /^URL: (.+)$/m.exec(info)?.[1];
  if (url === undefined) throw new Error(`no URL in the narinfo of ${path}`);
  await unlink(join(cache, url));
  await unlink(narinfoFile(cache, path));
}

async function holds(cache: string, path: string): Promise<boolean> {
  return readFile(narinfoFile(cache, path), "utf8").then(
    () => true,
    () => false,
  );
}
