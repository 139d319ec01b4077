// The evaluation benchmark (`npm run bench:eval`): `nixship build` of N distinct host systems
// (N = 10, 50, 100, 200 by default) in one evaluation and one build, split into the two by a
// `nix` shim that times each Nix call; then the same N systems evaluated by 1, 2 and 4
// concurrent `nix eval` processes, each on a slice, with the expression nixship uses (what
// colmena's nix-eval-jobs workers would do). On Debian's Nix 2.8 (the machine's) and on
// Nix 2.26 (scripts/current-nix.sh, in a /nix of its own) in the same run. Prints wall, CPU
// and peak RSS, how they grow (a least-squares line) and whether parallel evaluation pays;
// asserts nothing.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CURRENT_NIX_BIN, withCurrentNix } from "../support/current-nix.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import {
  evalExpression,
  flakeRefOf,
  SALT_VARIABLE,
  saltedSuffix,
  slices,
  writeEvalFlake,
  writeEvalFleet,
} from "./eval-flake.js";
import { hasGnuTime, type Measurement, measure } from "./measure.js";
import {
  clearShimLog,
  makeNixShim,
  type NixCall,
  type NixShim,
  readShimCalls,
  readShimExpressions,
} from "./nix-shim.js";
import { linearFit, machineCpuSeconds, mb, median, table } from "./stats.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
// Never a substituter: nothing here may leave the machine.
const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };
const NEW_CLI = `--extra-experimental-features 'nix-command flakes'`;
// Each worker evaluates its slice's expression (a file) into FILE.json; all start at once.
const WORKERS_SCRIPT = `set -u
pids=
for f in "$@"; do
  nix ${NEW_CLI} eval --impure --json --expr "$(cat "$f")" > "$f.json" &
  pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
exit $rc`;

/** A Nix under test: how to run a command with it (and the shim) first on PATH. */
interface TestedNix {
  readonly id: "2.8" | "2.26";
  readonly version: string;
  readonly shim: NixShim;
  readonly wrap: (command: string, args: readonly string[]) => [string, string[]];
}

interface BuildSample {
  readonly nix: TestedNix["id"];
  readonly systems: number;
  readonly m: Measurement;
  readonly evaluation: NixCall | undefined;
  readonly build: NixCall | undefined;
  /** Whether the expression nixship ran is the one eval-flake.ts makes. */
  readonly sameExpression: boolean;
  /** The whole machine's CPU seconds in that time (other work on it included). */
  readonly machineCpu: number;
}

interface EvalSample {
  readonly nix: TestedNix["id"];
  readonly systems: number;
  readonly workers: number;
  readonly m: Measurement;
  readonly calls: readonly NixCall[];
  readonly machineCpu: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      systems: { type: "string", default: "10,50,100,200" },
      workers: { type: "string", default: "1,2,4" },
      runs: { type: "string", default: "3" },
      packages: { type: "string", default: "3" },
      weight: { type: "string", default: "0" },
      "eval-only": { type: "boolean", default: false },
      nix: { type: "string", default: "2.8,2.26" },
      timeout: { type: "string", default: "600" },
    },
  });
  const list = (s: unknown, fallback: number) =>
    [
      ...new Set(
        String(s)
          .split(",")
          .map((n) => Math.max(1, Number(n) || fallback)),
      ),
    ].sort((a, b) => a - b);
  const sizes = list(values.systems, 10).map((n) => Math.min(2000, n));
  const workerCounts = list(values.workers, 1).map((n) => Math.min(16, n));
  const runs = Math.min(10, Math.max(1, Number(values.runs) || 3));
  const packages = Math.min(20, Math.max(0, Number(values.packages) || 0));
  const weight = Math.min(1_000_000, Math.max(0, Number(values.weight) || 0));
  const evalOnly = values["eval-only"] === true;
  const timeoutS = Math.max(30, Number(values.timeout) || 600);
  const nixes = String(values.nix).split(",");
  if (!hasGnuTime())
    throw new Error("bench:eval needs GNU time (/usr/bin/time: apt-get install time)");

  const work = await mkdtemp(join(tmpdir(), "nixship-bench-eval-"));
  const salts: string[] = [];
  const runId = Math.random().toString(36).slice(2, 8);
  const newSalt = () => {
    const salt = `e${runId}${salts.length}`;
    salts.push(salt);
    return salt;
  };
  const cleanUp = (): void => {
    deleteSalted(salts);
    rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    cleanUp();
    process.exit(130);
  });

  try {
    const flakeDir = join(work, "flake");
    await mkdir(flakeDir);
    await writeEvalFlake(flakeDir, Math.max(...sizes), packages, weight);
    const fleets = new Map<number, string>();
    for (const n of sizes) fleets.set(n, await writeEvalFleet(flakeDir, n));
    const flake = await flakeRefOf(flakeDir);
    const tested: TestedNix[] = [];
    if (nixes.includes("2.8")) tested.push(await machineNix(join(work, "shim-2.8")));
    if (nixes.includes("2.26")) {
      const current = await currentNix(join(work, "shim-2.26"), join(work, "nix-2.26"));
      if (current === undefined) {
        console.log(
          `no Nix 2.26 in ${CURRENT_NIX_BIN} (make it with 'bash scripts/current-nix.sh'): 2.8 alone`,
        );
      } else tested.push(current);
    }
    console.log(
      `bench:eval: ${sizes.join(", ")} distinct systems (${packages + 2} derivations of their own each` +
        `${weight > 0 ? `, ${weight} options each` : ""}), ${evalOnly ? "evaluation only, " : ""}` +
        `workers ${workerCounts.join(", ")}, ${runs} runs each; ${tested.map((t) => t.version).join(", ")}; ` +
        `${availableParallelism()} cores, ${loadAverage()} (the machine is shared: its other work counts in wall times)`,
    );

    const run = async (
      nix: TestedNix,
      command: string,
      args: readonly string[],
      salt: string,
    ): Promise<{ m: Measurement; calls: NixCall[]; machineCpu: number }> => {
      await clearShimLog(nix.shim);
      const [file, argv] = nix.wrap(command, args);
      const before = machineCpuSeconds();
      const m = await measure("timeout", ["-k", "5", String(timeoutS), file, ...argv], {
        ...ENV,
        [SALT_VARIABLE]: salt,
      });
      const machineCpu = machineCpuSeconds() - before;
      if (m.code !== 0) {
        throw new Error(
          `${command} ${args.slice(0, 4).join(" ")} (${nix.version}) exited ${m.code}:\n${m.stderrTail}`,
        );
      }
      return { m, calls: await readShimCalls(nix.shim), machineCpu };
    };

    const builds: BuildSample[] = [];
    const evals: EvalSample[] = [];
    for (const nix of tested) {
      // Unmeasured: the flake's first copy into this store, and this Nix's first start.
      await run(
        nix,
        "sh",
        ["-c", WORKERS_SCRIPT, "sh", ...(await exprFiles(work, flake, ["host-1"], 1))],
        newSalt(),
      );
      for (const n of sizes) {
        const names = Array.from({ length: n }, (_, k) => `host-${k + 1}`);
        if (!evalOnly) {
          const fleet = fleets.get(n) as string;
          const salt = newSalt();
          const r = await run(
            nix,
            process.execPath,
            [NIXSHIP, "build", "--fleet", fleet, "--json"],
            salt,
          );
          checkBuilt(r.m.stdout, n, salt);
          const expressions = await readShimExpressions(nix.shim);
          const sample: BuildSample = {
            nix: nix.id,
            systems: n,
            m: r.m,
            evaluation: r.calls.find((c) => c.command === "eval"),
            build: r.calls.find((c) => c.command === "build"),
            sameExpression: expressions.includes(evalExpression(flake, names)),
            machineCpu: r.machineCpu,
          };
          builds.push(sample);
          console.log(`${nix.id}  ${n} systems  nixship build  ${describeBuild(sample)}`);
        }
        for (let round = 0; round < runs; round++) {
          // Each round starts with another worker count, so none always runs first.
          const order = workerCounts.map(
            (_, k) => workerCounts[(k + round) % workerCounts.length] as number,
          );
          for (const workers of order) {
            const parts = slices(names, workers);
            const files = await exprFiles(work, flake, names, workers);
            const salt = newSalt();
            const e = await run(nix, "sh", ["-c", WORKERS_SCRIPT, "sh", ...files], salt);
            await checkEvaluated(files, parts, salt);
            const s: EvalSample = {
              nix: nix.id,
              systems: n,
              workers: parts.length,
              m: e.m,
              calls: e.calls.filter((c) => c.command === "eval"),
              machineCpu: e.machineCpu,
            };
            evals.push(s);
            console.log(
              `${nix.id}  ${n} systems  ${s.workers} eval worker(s)  ${s.m.seconds.toFixed(2)} s  ` +
                `${(s.m.cpuSeconds ?? Number.NaN).toFixed(2)} CPU-s  largest ${mb(s.m.maxRssBytes ?? Number.NaN)}  ` +
                `sum ${mb(s.m.treePeakRssBytes)}  machine ${s.machineCpu.toFixed(1)} CPU-s`,
            );
          }
        }
      }
    }
    console.log(`\n${loadAverage()}\n`);
    console.log(report(tested, builds, evals, sizes, workerCounts));
  } finally {
    cleanUp();
  }
}

/** The machine's Nix (Debian 12's 2.8), through the shim. */
async function machineNix(dir: string): Promise<TestedNix> {
  const found = spawnSync("sh", ["-c", "command -v nix"], { encoding: "utf8", timeout: 10_000 });
  const real = found.stdout.trim();
  if (found.status !== 0 || real === "")
    throw new Error("no nix on PATH (apt-get install nix-bin)");
  const shim = await makeNixShim(dir, real);
  const version = spawnSync(real, ["--version"], {
    encoding: "utf8",
    timeout: 30_000,
  }).stdout.trim();
  const path = `${shim.bin}:${process.env.PATH ?? ""}`;
  return { id: "2.8", version, shim, wrap: (c, a) => ["env", [`PATH=${path}`, c, ...a]] };
}

/** Nix 2.26 with `root` as its /nix, through the shim; undefined when it has not been made. */
async function currentNix(dir: string, root: string): Promise<TestedNix | undefined> {
  const real = join(CURRENT_NIX_BIN, "nix");
  if (!existsSync(real)) return undefined;
  await mkdir(root, { recursive: true });
  const shim = await makeNixShim(dir, real);
  const version = spawnSync(real, ["--version"], {
    encoding: "utf8",
    timeout: 30_000,
  }).stdout.trim();
  const path = `${shim.bin}:${CURRENT_NIX_BIN}:${process.env.PATH ?? ""}`;
  return {
    id: "2.26",
    version,
    shim,
    wrap: (c, a) => withCurrentNix(root, "env", [`PATH=${path}`, c, ...a]),
  };
}

/** Writes the expression of each of `workers` slices of `names` to a file of its own. */
async function exprFiles(
  work: string,
  flake: string,
  names: readonly string[],
  workers: number,
): Promise<string[]> {
  const dir = await mkdtemp(join(work, "expr-"));
  return Promise.all(
    slices(names, workers).map(async (part, k) => {
      const file = join(dir, `slice-${k}.nix`);
      await writeFile(file, evalExpression(flake, part));
      return file;
    }),
  );
}

/** `nixship build --json` gave N distinct systems of this run. */
function checkBuilt(stdout: string, n: number, salt: string): void {
  const out = JSON.parse(stdout) as { systems: { path: string }[] };
  const paths = new Set(out.systems.map((s) => s.path));
  if (paths.size !== n || ![...paths].every((p) => saltedSuffix(salt).test(p))) {
    throw new Error(`nixship build gave ${paths.size} systems of this run, not ${n}`);
  }
}

/** Each worker gave its slice's derivations, all of this run. */
async function checkEvaluated(files: readonly string[], parts: readonly string[][], salt: string) {
  const drvs = new Set<string>();
  for (const [k, file] of files.entries()) {
    const picked = JSON.parse(await readFile(`${file}.json`, "utf8")) as { drv?: string }[];
    if (picked.length !== parts[k]?.length) throw new Error(`${file}: ${picked.length} results`);
    for (const p of picked)
      if (p.drv !== undefined && saltedSuffix(salt).test(p.drv)) drvs.add(p.drv);
  }
  const n = parts.reduce((sum, p) => sum + p.length, 0);
  if (drvs.size !== n)
    throw new Error(`the workers gave ${drvs.size} distinct derivations, not ${n}`);
}

function describeBuild(s: BuildSample): string {
  const call = (c: NixCall | undefined) =>
    c === undefined
      ? "n/a"
      : `${c.seconds.toFixed(2)} s, ${c.cpuSeconds.toFixed(2)} CPU-s, ${mb(c.maxRssBytes)}`;
  return (
    `${s.m.seconds.toFixed(2)} s  ${(s.m.cpuSeconds ?? Number.NaN).toFixed(2)} CPU-s  ` +
    `eval ${call(s.evaluation)}  build ${call(s.build)}  machine ${s.machineCpu.toFixed(1)} CPU-s` +
    (s.sameExpression ? "" : "  (the expression nixship ran differs from eval-flake.ts's)")
  );
}

function report(
  tested: readonly TestedNix[],
  builds: readonly BuildSample[],
  evals: readonly EvalSample[],
  sizes: readonly number[],
  workerCounts: readonly number[],
): string {
  const out: string[] = [];
  for (const nix of tested) {
    const mine = builds.filter((b) => b.nix === nix.id);
    if (mine.length > 0) out.push(buildReport(nix, mine));

    out.push(
      `evaluation alone, ${nix.version}: N systems over W concurrent 'nix eval' (medians of the runs; CPU and RSS of all workers)`,
    );
    const rows: string[][] = [
      [
        "systems",
        "workers",
        "wall s",
        "× of 1",
        "CPU-s",
        "CPU × of 1",
        "largest RSS",
        "sum RSS",
        "slowest worker s",
        "machine CPU-s",
      ],
    ];
    const verdicts: string[] = [];
    for (const n of sizes) {
      const of = (w: number) =>
        evals.filter((e) => e.nix === nix.id && e.systems === n && e.workers === w);
      const wall1 = median(of(workerCounts[0] ?? 1).map((e) => e.m.seconds));
      const cpu1 = median(of(workerCounts[0] ?? 1).map((e) => e.m.cpuSeconds ?? Number.NaN));
      for (const w of workerCounts) {
        const e = of(w);
        if (e.length === 0) continue;
        const wall = median(e.map((x) => x.m.seconds));
        const cpu = median(e.map((x) => x.m.cpuSeconds ?? Number.NaN));
        rows.push([
          String(n),
          String(w),
          s2(wall),
          `${(wall / wall1).toFixed(2)}`,
          s2(cpu),
          `${(cpu / cpu1).toFixed(2)}`,
          mb(Math.max(...e.map((x) => x.m.maxRssBytes ?? Number.NaN))),
          mb(Math.max(...e.map((x) => x.m.treePeakRssBytes))),
          s2(median(e.map((x) => Math.max(...x.calls.map((c) => c.seconds))))),
          s2(median(e.map((x) => x.machineCpu))),
        ]);
        if (w !== (workerCounts[0] ?? 1) && n === Math.max(...sizes)) {
          verdicts.push(
            `  ${n} systems, ${w} workers: wall ${(wall / wall1).toFixed(2)}× of 1 worker's ` +
              `(${wall < wall1 ? `${(wall1 - wall).toFixed(2)} s saved` : `${(wall - wall1).toFixed(2)} s lost`}), CPU ${(cpu / cpu1).toFixed(2)}×`,
          );
        }
      }
    }
    out.push(table(rows));
    const one = evals.filter((e) => e.nix === nix.id && e.workers === (workerCounts[0] ?? 1));
    const line = (label: string, of: (e: EvalSample) => number, unit: "s" | "MB") =>
      growthLine(
        label,
        sizes.map((n) => ({ x: n, y: median(one.filter((e) => e.systems === n).map(of)) })),
        unit,
      );
    out.push(`growth with ${workerCounts[0] ?? 1} worker, least squares over the medians:`);
    out.push(line("wall", (e) => e.m.seconds, "s"));
    out.push(line("CPU", (e) => e.m.cpuSeconds ?? Number.NaN, "s"));
    out.push(line("evaluator peak RSS", (e) => e.m.maxRssBytes ?? Number.NaN, "MB"));
    out.push(...verdicts);
    out.push("");
  }
  return out.join("\n");
}

/** The table of `nixship build` on one Nix, split into its evaluation and build, and the fits. */
function buildReport(nix: TestedNix, mine: readonly BuildSample[]): string {
  const out: string[] = [];
  out.push(
    `nixship build, ${nix.version} (one run each; eval and build are nixship's own nix calls)`,
  );
  out.push(
    table([
      [
        "systems",
        "wall s",
        "CPU-s",
        "eval s",
        "eval CPU-s",
        "eval RSS",
        "build s",
        "build CPU-s",
        "rest s",
        "machine CPU-s",
        "same expr",
      ],
      ...mine.map((b) => [
        String(b.systems),
        s2(b.m.seconds),
        s2(b.m.cpuSeconds),
        s2(b.evaluation?.seconds),
        s2(b.evaluation?.cpuSeconds),
        mb(b.evaluation?.maxRssBytes ?? Number.NaN),
        s2(b.build?.seconds),
        s2(b.build?.cpuSeconds),
        s2(b.m.seconds - (b.evaluation?.seconds ?? 0) - (b.build?.seconds ?? 0)),
        s2(b.machineCpu),
        b.sameExpression ? "yes" : "NO",
      ]),
    ]),
  );
  const growth = (label: string, of: (b: BuildSample) => number | undefined, unit: "s" | "MB") =>
    growthLine(
      label,
      mine.flatMap((b) => {
        const y = of(b);
        return y === undefined ? [] : [{ x: b.systems, y }];
      }),
      unit,
    );
  out.push("growth, least squares over the sizes:");
  out.push(growth("nixship build wall", (b) => b.m.seconds, "s"));
  out.push(growth("nixship build CPU", (b) => b.m.cpuSeconds, "s"));
  out.push(growth("evaluation wall", (b) => b.evaluation?.seconds, "s"));
  out.push(growth("evaluation CPU", (b) => b.evaluation?.cpuSeconds, "s"));
  out.push(growth("evaluator peak RSS", (b) => b.evaluation?.maxRssBytes, "MB"));
  out.push(growth("build wall", (b) => b.build?.seconds, "s"));
  out.push("");
  return out.join("\n");
}

/** `label`: intercept + slope per system of a least-squares line through the points. */
function growthLine(
  label: string,
  points: readonly { readonly x: number; readonly y: number }[],
  unit: "s" | "MB",
): string {
  if (new Set(points.map((p) => p.x)).size < 2) return `  ${label.padEnd(22)} n/a (one size)`;
  const f = linearFit(points.map((p) => ({ x: p.x, y: unit === "MB" ? p.y / 1e6 : p.y })));
  const per = unit === "s" ? `${(f.slope * 1000).toFixed(1)} ms` : `${f.slope.toFixed(2)} MB`;
  const base = unit === "s" ? `${f.intercept.toFixed(2)} s` : `${f.intercept.toFixed(1)} MB`;
  return `  ${label.padEnd(22)} ${base} + ${per} per system (r² ${f.r2.toFixed(3)})`;
}

/** Two decimals, or n/a. */
function s2(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "n/a" : x.toFixed(2);
}

/**
 * Deletes from the machine's store every path of the runs (their names end with a run's
 * salt): one `nix-store --delete` per salt, whose paths refer only to each other and to the
 * shared ones, which stay. Nix 2.26's store goes with the work directory.
 */
function deleteSalted(salts: readonly string[]): void {
  const names = (() => {
    try {
      return readdirSync("/nix/store");
    } catch {
      return [];
    }
  })();
  for (const salt of salts) {
    const suffix = saltedSuffix(salt);
    const paths = names.filter((p) => suffix.test(p)).map((p) => `/nix/store/${p}`);
    if (paths.length === 0) continue;
    const r = spawnSync("nix-store", ["--delete", ...paths], {
      env: ENV,
      encoding: "utf8",
      timeout: 300_000,
    });
    if (r.status !== 0) {
      console.error(
        `could not delete the paths of run ${salt}: ${(r.stderr ?? "").trim().split("\n").at(-1)}`,
      );
    }
  }
}

function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

await main();
