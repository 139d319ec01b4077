// The S3 push benchmark (`npm run bench:push-s3`): `nixship push` of the synthetic closure to
// s3rver on loopback, against the two-step route of a Nix without S3 support (`nix copy --to
// file://`, then `aws s3 sync`), in the same run; s3rver counts both tools' requests by kind, and
// their bytes, the same way. Then the push again, when every path is present.
//
// Three processes: this one (the runs), s3rver in a child started from this same file
// (--serve-s3), which counts what it answers, and the tool measured; s3rver's CPU is not counted
// in a tool's. It counts in its own middleware, not in a proxy: a proxy in front would add a
// second copy of every byte on the same two cores (about 1.7 CPU-s per push here).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Interface } from "node:readline";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { PushSummary } from "../src/cache/push.js";
import { REQUEST_KINDS, type RequestKind, type RequestStats } from "../src/store/object-store.js";
import { noRequests } from "../src/store/s3-requests.js";
import { nixCopyFromArgs } from "../support/cli.js";
import { classify } from "../support/counting-proxy.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { S3RVER_CREDENTIALS, startS3Server } from "../support/s3-server.js";
import { hasGnuTime, type Measurement, measure } from "./measure.js";
import { median, table } from "./stats.js";
import {
  buildSyntheticClosure,
  type ClosureStats,
  closureStats,
  warmPageCache,
} from "./synthetic-closure.js";

const SELF = fileURLToPath(import.meta.url);
const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const BUCKET = "nixship-bench";
/** Every measured command is stopped (by coreutils' timeout) after this long. */
const COMMAND_TIMEOUT_S = 900;
const START_TIMEOUT_MS = 30_000;
const RSS_TARGET = 300e6;
const SPEEDUP_TARGET = 2;
const REQUESTS_PER_PATH_TARGET = 3;

type Step = "nixship" | "nix copy" | "aws s3 sync" | "nixship, all present";

/** What s3rver answered during a step. */
interface Counts {
  readonly requests: Record<RequestKind, number>;
  /** Request and answer bodies, as their Content-Length headers say. */
  bytesIn: number;
  bytesOut: number;
  /** Answers with a status of 500 or more. */
  serverErrors: number;
  /** Requests for the cache's nix-cache-info: once per push, not per path. */
  cacheInfo: number;
  /** CPU seconds s3rver spent (it shares the machine's cores with the tool). */
  serverCpuSeconds: number;
}

interface Sample {
  readonly step: Step;
  readonly m: Measurement;
  /** What s3rver answered during the step (none for nix copy, which writes a directory). */
  readonly counts?: Counts;
  /** nixship's own count (its --json `store`). */
  readonly store?: RequestStats;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string", default: "3" },
      // Internal: the child mode this file runs in (the parent starts it).
      "serve-s3": { type: "boolean", default: false },
    },
  });
  if (values["serve-s3"]) return serveS3();
  const runs = Math.min(20, Math.max(1, Math.floor(Number(values.runs) || 3)));

  const work = await mkdtemp(join(tmpdir(), "nixship-bench-s3-"));
  const children = new Set<ChildProcess>();
  const cleanUp = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    cleanUp();
    process.exit(130);
  });
  const env = benchEnv(work);
  let s3: S3Child | undefined;
  try {
    const aws = awsVersion(env);
    printMachine(aws);
    console.log("\nBuilding the synthetic closure (reused when already built)...");
    const top = await buildSyntheticClosure(env);
    const stats = await closureStats(top, env);
    console.log(
      `closure ${top}\n  ${stats.paths.length} store paths, NAR ${mb(stats.narBytes)}, ` +
        `${stats.files} files, ${stats.symlinks} symlinks, ${stats.dirs} directories`,
    );
    const secret = join(work, "bench.sec");
    const pub = output(
      process.execPath,
      [NIXSHIP, "key", "generate", "--name", "nixship-bench-s3", "--out", secret],
      env,
    ).trim();
    await warmPageCache(stats.paths, env);

    s3 = await startS3Child(work, env, children);
    console.log(
      `\ns3rver 3.7.1 on ${s3.endpoint}, in a child process that counts what it answers; each run` +
        ` pushes\nto a fresh prefix of bucket ${BUCKET}. ${runs} runs, the two routes in alternating` +
        " order; zstd level 3 for both.",
    );
    const setup: RunSetup = { stats, secret, env, work, s3, aws: aws !== undefined };
    const samples: Sample[] = [];
    let kept: string | undefined;
    for (let r = 0; r < runs; r++) {
      const routes =
        r % 2 === 0 ? (["nixship", "two-step"] as const) : (["two-step", "nixship"] as const);
      for (const route of routes) {
        if (route === "nixship") {
          const prefix = `r${r + 1}-nixship`;
          samples.push(...(await runNixship(setup, prefix, r)));
          if (kept === undefined) kept = prefix;
          else await removePrefix(s3.directory, prefix);
        } else if (setup.aws) {
          samples.push(...(await runTwoStep(setup, `r${r + 1}-peer`, r)));
        }
      }
    }
    console.log(`  (${loadAverage()})`);
    console.log(`\n${report(samples, stats.paths.length, setup.aws)}`);
    if (kept !== undefined) await checkWithNix(setup, kept, top, pub);
  } finally {
    await stopChild(s3?.child);
    cleanUp();
  }
}

interface RunSetup {
  readonly stats: ClosureStats;
  readonly secret: string;
  readonly env: NodeJS.ProcessEnv;
  readonly work: string;
  readonly s3: S3Child;
  readonly aws: boolean;
}

/** nixship's full push to a fresh prefix, then the same push again, when all is present. */
async function runNixship(setup: RunSetup, prefix: string, r: number): Promise<Sample[]> {
  const { stats, s3 } = setup;
  const url = `s3://${BUCKET}/${prefix}?region=us-east-1&endpoint=${encodeURIComponent(s3.endpoint)}`;
  const args = [NIXSHIP, "push", stats.top, "--to", url, "--key", setup.secret, "--json"];
  const samples: Sample[] = [];
  for (const step of ["nixship", "nixship, all present"] as const) {
    await s3.counts();
    const m = await measured(process.execPath, args, setup.env);
    const counts = await s3.counts();
    if (m.code !== 0) throw new Error(`${step} exited ${m.code}:\n${m.stderrTail}`);
    const summary = JSON.parse(m.stdout) as PushSummary & { store?: RequestStats };
    const pushed = step === "nixship" ? stats.paths.length : 0;
    if (summary.pushed !== pushed || summary.paths !== stats.paths.length) {
      throw new Error(`${step}: pushed ${summary.pushed} of ${summary.paths} paths`);
    }
    samples.push({ step, m, counts, ...(summary.store ? { store: summary.store } : {}) });
    logRun(r, step, m, counts);
  }
  return samples;
}

/** `nix copy --to file://DIR`, then `aws s3 sync DIR` to a fresh prefix; checks what arrived. */
async function runTwoStep(setup: RunSetup, prefix: string, r: number): Promise<Sample[]> {
  const { stats, s3 } = setup;
  const dir = await mkdtemp(join(setup.work, "nix-copy-"));
  try {
    const copy = await measured(
      "nix",
      ["copy", "--to", `file://${dir}?compression=zstd&secret-key=${setup.secret}`, stats.top],
      setup.env,
    );
    if (copy.code !== 0) throw new Error(`nix copy exited ${copy.code}:\n${copy.stderrTail}`);
    logRun(r, "nix copy", copy, undefined);
    await s3.counts();
    const sync = await measured(
      "aws",
      [
        "s3",
        "sync",
        dir,
        `s3://${BUCKET}/${prefix}`,
        "--endpoint-url",
        s3.endpoint,
        "--only-show-errors",
        "--no-progress",
      ],
      setup.env,
    );
    const counts = await s3.counts();
    if (sync.code !== 0) throw new Error(`aws s3 sync exited ${sync.code}:\n${sync.stderrTail}`);
    logRun(r, "aws s3 sync", sync, counts);
    await sameObjects(dir, join(s3.directory, BUCKET, prefix));
    return [
      { step: "nix copy", m: copy },
      { step: "aws s3 sync", m: sync, counts },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
    await removePrefix(s3.directory, prefix);
  }
}

/** Every file nix copy wrote is in s3rver's directory under the prefix, with its size. */
async function sameObjects(dir: string, stored: string): Promise<void> {
  const local = await files(dir);
  const remote = new Map(
    [...(await files(stored))]
      .filter(([name]) => name.endsWith("._S3rver_object"))
      .map(([name, size]) => [name.slice(0, -"._S3rver_object".length), size]),
  );
  for (const [name, size] of local) {
    if (remote.get(name) !== size) {
      throw new Error(
        `aws s3 sync: ${name} is ${remote.get(name) ?? "missing"} in s3rver, ${size} bytes here`,
      );
    }
  }
  if (remote.size !== local.size)
    throw new Error(`aws s3 sync: ${remote.size} objects for ${local.size} files`);
}

async function files(root: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) found.set(relative(root, path), (await stat(path)).size);
    }
  };
  await walk(root);
  return found;
}

/** Frees the disk: s3rver keeps a prefix's objects under one directory. */
async function removePrefix(directory: string, prefix: string): Promise<void> {
  await rm(join(directory, BUCKET, prefix), { recursive: true, force: true });
}

/** `nix copy --from` the nixship S3 cache, through `nixship cache serve`, into a fresh store. */
async function checkWithNix(setup: RunSetup, prefix: string, top: string, pub: string) {
  const url = `s3://${BUCKET}/${prefix}?region=us-east-1&endpoint=${encodeURIComponent(setup.s3.endpoint)}`;
  const serve = spawn(
    process.execPath,
    [NIXSHIP, "cache", "serve", url, "--listen", "127.0.0.1:0"],
    {
      env: setup.env,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const store = join(setup.work, "verify-store");
  try {
    const listening = await firstMatch(serve, /listening on (http:\/\/\S+)/, START_TIMEOUT_MS);
    const m = await measured("nix", nixCopyFromArgs(listening, store, pub, top), setup.env);
    const ok = m.code === 0;
    console.log(
      `\nCorrectness: nix copy --from the nixship S3 cache (through nixship cache serve) into a fresh` +
        ` store, require-sigs: ${ok ? "OK" : "FAIL"} (${m.seconds.toFixed(1)} s)${ok ? "" : `\n${m.stderrTail}`}`,
    );
    if (!ok) process.exitCode = 1;
  } finally {
    await stopChild(serve);
    // Nix leaves the store's directories read-only.
    spawnSync("chmod", ["-R", "u+w", store]);
    await rm(store, { recursive: true, force: true });
  }
}

// --- the report ---------------------------------------------------------------------------

function report(samples: readonly Sample[], paths: number, aws: boolean): string {
  const of = (step: Step) => samples.filter((s) => s.step === step);
  const wall = (step: Step) => median(of(step).map((s) => s.m.seconds));
  const cpu = (step: Step) => median(of(step).map((s) => s.m.cpuSeconds ?? Number.NaN));
  const rss = (step: Step) =>
    Math.max(...of(step).map((s) => Math.max(s.m.maxRssBytes ?? 0, s.m.treePeakRssBytes)));
  const kinds = (step: Step) => medianCounts(of(step).flatMap((s) => (s.counts ? [s.counts] : [])));
  const twoStep = median(
    of("nix copy").map((s, i) => s.m.seconds + (of("aws s3 sync")[i]?.m.seconds ?? Number.NaN)),
  );
  const twoStepCpu = median(
    of("nix copy").map(
      (s, i) => (s.m.cpuSeconds ?? Number.NaN) + (of("aws s3 sync")[i]?.m.cpuSeconds ?? Number.NaN),
    ),
  );
  const lines: string[] = [];
  const full: Step[] = aws ? ["nixship", "nix copy", "aws s3 sync"] : ["nixship"];
  const rows = [
    [
      "full push",
      "wall, median",
      "CPU s, median",
      "peak RSS",
      "requests",
      "bytes up",
      "bytes down",
      "retries",
      "s3rver CPU s",
    ],
  ];
  for (const step of full) {
    const k = kinds(step);
    rows.push([
      step,
      `${wall(step).toFixed(2)} s`,
      cpu(step).toFixed(2),
      mb(rss(step)),
      k ? String(total(k.requests)) : "-",
      k ? mb(k.bytesIn) : "-",
      k ? mb(k.bytesOut) : "-",
      retriesOf(of(step)),
      k ? k.serverCpuSeconds.toFixed(2) : "-",
    ]);
  }
  if (aws) {
    rows.push([
      "two-step total",
      `${twoStep.toFixed(2)} s`,
      twoStepCpu.toFixed(2),
      mb(Math.max(rss("nix copy"), rss("aws s3 sync"))),
      "",
      "",
      "",
      "",
      "",
    ]);
  }
  lines.push(`Full push of ${paths} new paths (CPU: the tool and its children; RSS: the larger of`);
  lines.push("GNU time's largest process and the sampled sum of the tree)", "", table(rows));

  lines.push("", `Requests per new path, by kind (median counts over the runs, / ${paths}):`, "");
  const perPath = [["", ...REQUEST_KINDS, "all", "all but parts"]];
  for (const step of [
    "nixship",
    ...(aws ? ["aws s3 sync"] : []),
    "nixship, all present",
  ] as Step[]) {
    const k = kinds(step);
    if (!k) continue;
    const all = total(k.requests);
    perPath.push([
      step,
      ...REQUEST_KINDS.map((kind) => (k.requests[kind] / paths).toFixed(2)),
      (all / paths).toFixed(2),
      ((all - k.requests["multipart-part"]) / paths).toFixed(2),
    ]);
  }
  lines.push(table(perPath));

  const present = "nixship, all present";
  const k = kinds(present);
  lines.push(
    "",
    `The same push again, all ${paths} paths present: nixship ${wall(present).toFixed(2)} s wall,` +
      ` CPU ${cpu(present).toFixed(2)} s, ${k ? total(k.requests) : "?"} requests` +
      ` (${k ? describeCounts(k.requests) : "?"}). (aws s3 sync of an unchanged directory is not comparable.)`,
  );

  // The target counts what each path costs: its narinfo check, NAR and narinfo. A push also
  // reads (and into a new cache, writes) nix-cache-info once, whatever the number of paths.
  const nixshipCounts = kinds("nixship");
  const perNewPath = nixshipCounts
    ? (total(nixshipCounts.requests) -
        nixshipCounts.requests["multipart-part"] -
        nixshipCounts.cacheInfo) /
      paths
    : Number.NaN;
  const speedup = twoStep / wall("nixship");
  const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");
  lines.push("", "Targets:");
  lines.push(
    aws
      ? `  ${verdict(speedup >= SPEEDUP_TARGET)}  S3 full push >= ${SPEEDUP_TARGET}x faster than nix copy + aws s3 sync: ${speedup.toFixed(2)}x (${twoStep.toFixed(2)} s / ${wall("nixship").toFixed(2)} s)`
      : "  ----  S3 full push against nix copy + aws s3 sync: not measured (no aws on PATH)",
  );
  lines.push(
    `  ${verdict(perNewPath <= REQUESTS_PER_PATH_TARGET)}  at most ${REQUESTS_PER_PATH_TARGET} requests per new path beside multipart parts: ${perNewPath.toFixed(2)}` +
      ` (every request but UploadPart and the ${nixshipCounts?.cacheInfo ?? "?"} for nix-cache-info, once per push)`,
  );
  lines.push(
    `  ${verdict(rss("nixship") < RSS_TARGET)}  peak RSS < ${mb(RSS_TARGET)}: ${mb(rss("nixship"))}`,
  );
  // On a machine this small, s3rver's work competes with the tool's for the same cores: the CPU
  // both need bounds the wall time from below.
  const demand = (step: Step) => cpu(step) + (kinds(step)?.serverCpuSeconds ?? 0);
  const cores = availableParallelism();
  lines.push(
    "",
    `CPU the push and s3rver need together, and the least wall time that allows on ${cores} cores:` +
      `\n  nixship ${demand("nixship").toFixed(2)} CPU-s (>= ${(demand("nixship") / cores).toFixed(2)} s)` +
      (aws
        ? `; nix copy, then aws s3 sync: ${cpu("nix copy").toFixed(2)} + ${demand("aws s3 sync").toFixed(2)} CPU-s`
        : ""),
  );
  return lines.join("\n");
}

function retriesOf(samples: readonly Sample[]): string {
  const stored = samples.flatMap((s) => (s.store ? [s.store.retries] : []));
  if (stored.length > 0) return `${median(stored)} (its count)`;
  const errors = samples.flatMap((s) => (s.counts ? [s.counts.serverErrors] : []));
  return errors.length > 0 ? `${median(errors)} (5xx seen)` : "-";
}

function medianCounts(counts: readonly Counts[]): Counts | undefined {
  if (counts.length === 0) return undefined;
  const requests = Object.fromEntries(
    REQUEST_KINDS.map((kind) => [kind, median(counts.map((c) => c.requests[kind]))]),
  ) as Record<RequestKind, number>;
  return {
    requests,
    bytesIn: median(counts.map((c) => c.bytesIn)),
    bytesOut: median(counts.map((c) => c.bytesOut)),
    serverErrors: median(counts.map((c) => c.serverErrors)),
    cacheInfo: median(counts.map((c) => c.cacheInfo)),
    serverCpuSeconds: median(counts.map((c) => c.serverCpuSeconds)),
  };
}

function describeCounts(requests: Readonly<Record<RequestKind, number>>): string {
  return REQUEST_KINDS.filter((kind) => requests[kind] > 0)
    .map((kind) => `${requests[kind]} ${kind}`)
    .join(", ");
}

function total(requests: Readonly<Record<RequestKind, number>>): number {
  return REQUEST_KINDS.reduce((sum, kind) => sum + requests[kind], 0);
}

function logRun(r: number, step: Step, m: Measurement, counts: Counts | undefined): void {
  const requests = counts ? `  ${total(counts.requests)} requests` : "";
  console.log(
    `  run ${r + 1}  ${step.padEnd(20)}  ${m.seconds.toFixed(2)} s  CPU ${m.cpuSeconds?.toFixed(2) ?? "?"} s${requests}`,
  );
}

// --- processes ----------------------------------------------------------------------------

/** A command measured, stopped by coreutils' timeout if it runs past COMMAND_TIMEOUT_S. */
function measured(command: string, args: readonly string[], env: NodeJS.ProcessEnv) {
  return measure("timeout", ["--kill-after=10", String(COMMAND_TIMEOUT_S), command, ...args], env);
}

/** The environment of every child: no substituter, and S3 credentials and config for s3rver only. */
function benchEnv(work: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NIX_CONFIG: TEST_NIX_CONFIG,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
    // The user's AWS files and instance credentials stay out of it.
    AWS_CONFIG_FILE: join(work, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(work, "no-aws-credentials"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
  delete env.AWS_PROFILE;
  delete env.AWS_SESSION_TOKEN;
  return env;
}

function awsVersion(env: NodeJS.ProcessEnv): string | undefined {
  const r = spawnSync("aws", ["--version"], { env, encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) {
    console.log(
      "aws (the AWS CLI) was not found on PATH, so the two-step peer (nix copy, then aws s3 sync)" +
        "\nis not measured. On Debian: sudo apt-get install awscli",
    );
    return undefined;
  }
  return `${r.stdout}${r.stderr}`.trim().split("\n")[0];
}

/**
 * Child mode: s3rver on 127.0.0.1 in its own temp dir, counting what it answers. Each line on
 * stdin ("counts") is answered with the counts since the last one, as a JSON line; it stops when
 * stdin closes.
 */
async function serveS3(): Promise<void> {
  let counts = noCounts();
  const server = await startS3Server(BUCKET, {
    onAnswered: (a) => {
      counts.requests[classify(a.method, a.url, a.headers)]++;
      counts.bytesIn += a.bytesIn;
      counts.bytesOut += a.bytesOut;
      if (a.status >= 500) counts.serverErrors++;
      if (/\/nix-cache-info(\?|$)/.test(a.url)) counts.cacheInfo++;
    },
  });
  process.stdout.write(
    `${JSON.stringify({ endpoint: server.endpoint, directory: server.directory })}\n`,
  );
  const lines = createInterface({ input: process.stdin });
  let cpuBefore = process.cpuUsage();
  lines.on("line", () => {
    const cpu = process.cpuUsage(cpuBefore);
    cpuBefore = process.cpuUsage();
    counts.serverCpuSeconds = (cpu.user + cpu.system) / 1e6;
    process.stdout.write(`${JSON.stringify(counts)}\n`);
    counts = noCounts();
  });
  await new Promise<void>((resolve) => {
    lines.once("close", resolve);
    process.once("SIGINT", resolve).once("SIGTERM", resolve);
  });
  await server.close();
  process.exit(0);
}

function noCounts(): Counts {
  return {
    requests: noRequests(),
    bytesIn: 0,
    bytesOut: 0,
    serverErrors: 0,
    cacheInfo: 0,
    serverCpuSeconds: 0,
  };
}

interface S3Child {
  readonly child: ChildProcess;
  readonly endpoint: string;
  readonly directory: string;
  /** What s3rver answered since the last call. */
  counts(): Promise<Counts>;
}

async function startS3Child(
  work: string,
  env: NodeJS.ProcessEnv,
  children: Set<ChildProcess>,
): Promise<S3Child> {
  // s3rver keeps its objects in a temp dir: under `work`, so that the clean-up removes them.
  const child = spawn(process.execPath, [SELF, "--serve-s3"], {
    env: { ...env, TMPDIR: work },
    stdio: ["pipe", "pipe", "inherit"],
  });
  children.add(child);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const started = JSON.parse(await nextLine(lines, child, START_TIMEOUT_MS)) as {
    endpoint: string;
    directory: string;
  };
  return {
    child,
    ...started,
    async counts() {
      const answer = nextLine(lines, child, 10_000);
      child.stdin?.write("counts\n");
      return JSON.parse(await answer) as Counts;
    },
  };
}

/** The child's next line of output, within `timeoutMs`. */
function nextLine(lines: Interface, child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      child.off("close", closed);
      lines.off("line", line);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`s3rver did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const closed = (code: number | null) => {
      done();
      reject(new Error(`s3rver exited with ${code}`));
    };
    const line = (text: string) => {
      done();
      resolve(text);
    };
    child.once("close", closed);
    lines.once("line", line);
  });
}

function firstMatch(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let stderr = "";
    const timer = setTimeout(() => {
      reject(new Error(`no "${pattern.source}" within ${timeoutMs / 1000} s: ${stderr}`));
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}: ${stderr}`));
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
      const m = pattern.exec(stderr);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
}

/** Closes the child's stdin (or signals it) and waits, at most 10 s before SIGKILL. */
async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.stdin) child.stdin.end();
  else child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

function output(command: string, args: readonly string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(command, args, { env, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${command} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function printMachine(aws: string | undefined): void {
  const nix = spawnSync("nix", ["--version"], { encoding: "utf8", timeout: 30_000 }).stdout.trim();
  console.log(
    `node ${process.version}, ${nix}, ${aws ?? "no aws"}, ${availableParallelism()} CPUs, ${loadAverage()}` +
      (hasGnuTime() ? "" : "\n/usr/bin/time not found: CPU seconds are not measured"),
  );
}

function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

await main();
