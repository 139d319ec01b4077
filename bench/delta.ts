// The delta benchmark (`npm run bench:delta`): what a host would fetch as a delta
// against a base it has, against the NAR whole (zstd as nixship pushes it, xz as cache.nixos.org
// serves it), on three corpora: a synthetic mass rebuild, real Debian 12 updates and the lab's
// example change; with the deployer's CPU to compute each delta and the host's CPU and memory to
// apply it. Prints tables, ratios and whether the targets are met; asserts nothing.
//
// Also (bench/delta-link.ts) the time to update one lab host over a link held to 50 Mbit/s (tc
// on its veth) and 20 ms (a relay: this kernel has no netem), nixship's deltas against `nix copy --from` the same cache, with the
// host's CPU and the bytes over the link; and (bench/delta-shared.ts) for 20 hosts that share
// bases, the deltas the deployer's real publisher computes (zstd's runs counted) against the
// hosts' needs. The publisher runs zstd with --single-thread; the engine measures do not.
//
// The corpora are written once under --dir (default /var/tmp/nixship-bench-delta, outside the
// repository) and reused, and so are the measurements of each pair (--remeasure measures again).
// The Debian packages come from Debian's mirror through apt (`apt-get update` first).
import { availableParallelism, cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_LEVEL } from "../src/cache/compression.js";
import { DELTA_WORTH_RATIO } from "../src/cache/delta-path.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { debianUpdates, labChange, massRebuild, type Pair } from "./delta-corpora.js";
import { type DeployCase, type DeployRun, deployBench, deployMedians } from "./delta-deploy.js";
import {
  type EngineOptions,
  type EngineResult,
  mb,
  measurePair,
  type PairResult,
} from "./delta-engines.js";
import { fastPassBench, fastPassReport } from "./delta-fast-pass.js";
import {
  COPY_WAY,
  DELTA_WAY,
  type LinkCase,
  type LinkMedians,
  type LinkShape,
  linkBench,
  linkMedians,
} from "./delta-link.js";
import { type SharedBaseResult, sharedBase } from "./delta-shared.js";
import { table } from "./stats.js";

const USAGE = `Usage: npm run bench:delta -- [--mass-mb N] [--levels 3,9,19] [--only mass,debian,lab,shared,link,deploy,fastpass]
       [--slow-level-max-mb N] [--bsdiff-max-gb N] [--xz-max-mb N] [--link-mbit N] [--link-delay-ms N] [--link-rounds N] [--lab-store disk|tmpfs]
       [--deploy-corpora mass,debian] [--deploy-links loopback,50/20,10/50] [--deploy-hosts 1,3]
       [--deploy-parallel N] [--deploy-tool system|named] [--deploy-ways deltas,whole] [--fastpass-rounds N] [--dir DIR] [--remeasure]

  --mass-mb N            the mass rebuild's size in MB of NAR, for its engines and the link
                         (default 250; 1000 takes about four times as long)
  --levels L,...         zstd --patch-from levels (default 3,9,19)
  --slow-level-max-mb N  levels 19+ only for targets up to N MB (default 120)
  --bsdiff-max-gb N      bsdiff only where it needs at most N GB of memory (default 4)
  --xz-max-mb N          xz -6 only for targets up to N MB (default: all; it is most of a
                         pair's CPU), "-" in the tables for the others
  --only C,...           what to run (default all): the corpora mass, debian, lab; shared
                         (20 hosts sharing bases: the pairs computed, each once); link (one
                         lab host, lab dlk, updated over a held link to the mass rebuild and
                         to the lab's example change: nixship's deltas against nix copy;
                         root, tc, and Nix 2.26 from scripts/setup.sh --current-nix)
                         deploy (not by default): whole \`nixship deploy\` runs, with deltas
                         and with --no-delta, to lab dde's hosts (root, tc, Nix 2.26): the
                         deploy's wall with the deltas' computing, its CPU, the load
                         fastpass (not by default): a deploy's fast pass over the mass
                         rebuild's pairs, their NARs read from the cache against dumped from
                         the deployer's store (the pairs added to this machine's store, and
                         deleted after)
  --deploy-corpora C,... deploy's corpora as systems (default mass; debian: the updates)
  --deploy-links L,...   deploy's links: loopback, or RATE/DELAY in Mbit/s and ms
                         (default loopback,50/20,10/50)
  --deploy-hosts N,...   deploy's host counts, the hosts sharing the pairs (default 1,3)
  --deploy-parallel N    deploy's hosts a wave after the canary (default 1: a rolling deploy,
                         where the later hosts take the deltas computed meanwhile)
  --deploy-tool T        what the hosts apply deltas with: system (default), the zstd in the
                         closure of the system each runs, as a NixOS system has and as a fleet
                         file with no \`deltas\` key uses; named, a zstd the fleet file names
                         (\`deltas.tool\`), which each host realises from the cache the first time
  --deploy-ways W,...    deploy's ways, in order (default deltas,whole; one of them alone to
                         look into it: the report's ratios then have nothing to compare)
  --fastpass-rounds N    fastpass's rounds, each both ways (default 3)
  --link-mbit N          the link's rate in Mbit/s, each way (tc tbf; default 50)
  --link-delay-ms N      what the link adds to a round trip (default 20): a relay in front of
                         the cache holds each chunk half of it each way (no netem here)
  --link-rounds N        the link's rounds, each both ways, each run right after the paths
                         were deleted, the ways taking turns at going first (default 3)
  --lab-store S          where the labs of link and deploy keep their hosts' stores and cache:
                         disk (default, this machine's), or tmpfs (one of the bench's own, 8 GiB
                         at most: the tools measured without the disk's file creation)
  --dir DIR              corpora and measurements (default /var/tmp/nixship-bench-delta)
  --remeasure            measure every pair again instead of reusing earlier figures (the
                         link and shared are measured afresh on every run)`;

const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };
const TARGET_MASS_BYTES = 20;
const TARGET_UPDATE_BYTES = 4;
const TARGET_APPLY_CPU = 2;
const TARGET_MASS_FASTER = 10;
/** The host's step by delta at most this times a whole fetch's wall, on a link this fast or faster. */
const TARGET_STEP_WALL = 1.5;
const FAST_LINK_MBIT = 1000;
/** What --only may name. */
const ONLY = ["mass", "debian", "lab", "shared", "link", "deploy", "fastpass"];
/** A delta's bytes besides delta.zst: its narinfo, delta-info, the target's narinfo, framing. */
const DELTA_WRAPPER_BYTES = 2000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "mass-mb": { type: "string", default: "250" },
      levels: { type: "string", default: "3,9,19" },
      "slow-level-max-mb": { type: "string", default: "120" },
      "bsdiff-max-gb": { type: "string", default: "4" },
      "xz-max-mb": { type: "string" },
      only: { type: "string", default: "mass,debian,lab,shared,link" },
      "link-mbit": { type: "string", default: "50" },
      "link-delay-ms": { type: "string", default: "20" },
      "link-rounds": { type: "string", default: "3" },
      "lab-store": { type: "string", default: "disk" },
      "deploy-corpora": { type: "string", default: "mass" },
      "deploy-links": { type: "string", default: "loopback,50/20,10/50" },
      "deploy-hosts": { type: "string", default: "1,3" },
      "deploy-parallel": { type: "string", default: "1" },
      "deploy-tool": { type: "string", default: "system" },
      "deploy-ways": { type: "string", default: "deltas,whole" },
      "fastpass-rounds": { type: "string", default: "3" },
      dir: { type: "string", default: "/var/tmp/nixship-bench-delta" },
      remeasure: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const number = (flag: string, text: string): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0)
      throw new Error(`--${flag} takes a positive number, not '${text}'\n${USAGE}`);
    return n;
  };
  const count = (flag: string, text: string): number => {
    const n = number(flag, text);
    if (!Number.isInteger(n))
      throw new Error(`--${flag} takes a whole number, not '${text}'\n${USAGE}`);
    return n;
  };
  const massMb = number("mass-mb", values["mass-mb"]);
  const store = values["lab-store"];
  if (store !== "disk" && store !== "tmpfs")
    throw new Error(`--lab-store takes disk or tmpfs, not '${store}'\n${USAGE}`);
  const storeWhere = store === "disk" ? "on this machine's disk" : "on a tmpfs";
  const options: EngineOptions = {
    zstdLevels: values.levels.split(",").map((l) => number("levels", l)),
    slowLevelMaxBytes: number("slow-level-max-mb", values["slow-level-max-mb"]) * 1e6,
    bsdiffMaxMemory: number("bsdiff-max-gb", values["bsdiff-max-gb"]) * 1e9,
    xzMaxBytes:
      values["xz-max-mb"] === undefined
        ? Number.POSITIVE_INFINITY
        : number("xz-max-mb", values["xz-max-mb"]) * 1e6,
  };
  const only = new Set(values.only.split(","));
  const unknown = [...only].filter((c) => !ONLY.includes(c));
  if (unknown.length > 0)
    throw new Error(`--only takes ${ONLY.join(", ")}, not '${unknown.join(",")}'\n${USAGE}`);
  const root = values.dir;
  const log = (line: string): void => console.log(line);

  log(
    `Machine: ${cpus()[0]?.model ?? "?"}, ${availableParallelism()} cores, ${mb(totalmem())} memory`,
  );
  log(`Corpora and figures under ${root}`);
  log(
    `Engines: zstd --patch-from=BASE --long=31 at levels ${options.zstdLevels.join(", ")} ` +
      `(levels 19+ only for targets up to ${mb(options.slowLevelMaxBytes)}); bsdiff/bspatch ` +
      `where it needs at most ${mb(options.bsdiffMaxMemory)} of memory.`,
  );
  log(
    `Whole NARs: zstd -${DEFAULT_LEVEL.zstd} in 4 MiB frames as nixship pushes them; ` +
      `xz -${DEFAULT_LEVEL.xz} as cache.nixos.org serves them.\n`,
  );

  const results: { corpus: string; results: PairResult[] }[] = [];
  const measureAll = async (corpus: string, pairs: Pair[]): Promise<PairResult[]> => {
    const out: PairResult[] = [];
    let cached = 0;
    for (const [i, pair] of pairs.entries()) {
      const started = performance.now();
      const r = await measurePair(
        pair,
        join(root, `work-${process.pid}`),
        join(root, "results"),
        options,
        values.remeasure,
      );
      if (r.cached) cached++;
      else {
        log(
          `  [${i + 1}/${pairs.length}] ${pair.name}: ${mb(r.narBytes)} NAR, measured in ` +
            `${((performance.now() - started) / 1000).toFixed(0)} s`,
        );
      }
      out.push(r);
    }
    if (cached > 0)
      log(
        `  (${cached} of ${pairs.length} pairs' figures from an earlier run; --remeasure to redo)`,
      );
    results.push({ corpus, results: out });
    return out;
  };

  if (only.has("mass")) {
    log(`Mass rebuild: building or reusing a corpus of about ${massMb} MB of NAR...`);
    const mass = await massRebuild(root, massMb);
    log(
      `  ${mass.paths} paths, ${mb(mass.narBytes)} of NAR (each side); ${mass.references} store ` +
        `path references rewritten (one per ${(mass.narBytes / Math.max(1, mass.references) / 1000).toFixed(1)} kB)`,
    );
    const r = await measureAll("mass rebuild", mass.pairs);
    log(`\n${massReport(r)}\n`);
  }
  if (only.has("debian")) {
    log("Debian 12 updates: downloading (once) and unpacking...");
    const pairs = await debianUpdates(root, log);
    for (const p of pairs) log(`  ${p.name}: ${p.detail}`);
    const r = await measureAll("debian", pairs);
    log(`\n${pairsReport("Debian 12 updates (each update one store path)", r)}\n`);
  }
  if (only.has("lab")) {
    log(
      "The lab's example change web-v1 -> web-v2 (examples/flake.nix), built by the local Nix...",
    );
    const lab = await labChange(root, ENV);
    log(
      `  web-v2 needs ${lab.fetched.length} paths web-v1 lacks: ${lab.fetched.map((p) => p.slice(44)).join(", ")}`,
    );
    log(
      `  bases by the design's rule (same package name): ${lab.byName.length} of ${lab.fetched.length}` +
        (lab.byName.length < lab.fetched.length
          ? " (the example names its paths ...-v1, ...-v2: parseDrvName reads no version there, so the names differ)"
          : ""),
    );
    const pairs = lab.byName.length > 0 ? lab.byName : lab.byTag;
    if (pairs !== lab.byName)
      log("  measured with the system's tag (v1/v2) taken off the names instead:");
    const r = await measureAll("lab example", pairs);
    log(`\n${pairsReport("The lab's example change", r)}\n`);
  }
  let link: { cases: LinkCase[]; shape: LinkShape } | undefined;
  if (only.has("link")) {
    const shape = {
      rateMbit: number("link-mbit", values["link-mbit"]),
      delayMs: number("link-delay-ms", values["link-delay-ms"]),
    };
    log(
      `One lab host (its store and cache ${storeWhere}) updated over a link held to ${shape.rateMbit} Mbit/s and ${shape.delayMs} ms ` +
        `(the mass rebuild of ${massMb} MB, the lab's example change)...`,
    );
    const mass = await massRebuild(root, massMb);
    const rounds = count("link-rounds", values["link-rounds"]);
    const cases = await linkBench({ root, mass: mass.pairs, env: ENV, shape, rounds, store, log });
    link = { cases, shape };
    log(`\n${linkReport(cases, shape)}\n`);
  }
  if (only.has("shared")) {
    log("20 hosts that share bases: publishing their plan's deltas...");
    log(`${sharedBaseReport(await sharedBase(join(root, `shared-${process.pid}`)))}\n`);
  }
  if (only.has("deploy")) {
    const links = values["deploy-links"].split(",").map((l) => {
      if (l === "loopback") return undefined;
      const [rate, delay] = l.split("/");
      return {
        rateMbit: number("deploy-links", rate ?? ""),
        delayMs: number("deploy-links", delay ?? ""),
      };
    });
    const hostCounts = values["deploy-hosts"].split(",").map((n) => number("deploy-hosts", n));
    const cases: DeployCase[] = [];
    for (const corpus of values["deploy-corpora"].split(",")) {
      if (corpus === "mass") {
        const mass = await massRebuild(root, massMb);
        cases.push({ name: `mass rebuild ${massMb} MB`, pairs: mass.pairs });
      } else if (corpus === "debian") {
        cases.push({ name: "debian updates", pairs: await debianUpdates(root, log) });
      } else throw new Error(`--deploy-corpora takes mass, debian, not '${corpus}'\n${USAGE}`);
    }
    const tool = values["deploy-tool"];
    if (tool !== "system" && tool !== "named")
      throw new Error(`--deploy-tool takes system or named, not '${tool}'\n${USAGE}`);
    const parallel = number("deploy-parallel", values["deploy-parallel"]);
    const ways = values["deploy-ways"].split(",").map((w) => {
      if (w !== "deltas" && w !== "whole")
        throw new Error(`--deploy-ways takes deltas, whole, not '${w}'\n${USAGE}`);
      return w;
    });
    log(
      `Whole deploys with deltas and with --no-delta (lab dde, its stores and cache ${storeWhere}; deltas applied with ${tool === "system" ? "the zstd of the system each host runs" : "a zstd the fleet file names"}; ${parallel} host(s) a wave after the canary)...`,
    );
    const runs = await deployBench({
      root,
      cases,
      links,
      hostCounts,
      parallel,
      tool,
      ways,
      store,
      env: ENV,
      log,
    });
    log(`\n${deployReport(runs)}\n`);
  }
  if (only.has("fastpass")) {
    log(`The fast pass over the mass rebuild of ${massMb} MB: from the cache, from the store...`);
    const mass = await massRebuild(root, massMb);
    const rounds = count("fastpass-rounds", values["fastpass-rounds"]);
    const runs = await fastPassBench({ root, pairs: mass.pairs, rounds, env: ENV, log });
    log(`\n${fastPassReport(runs)}\n`);
  }
  log(`\n${targetsReport(results, link)}`);
}

/** The deploys: each run's figures, and with deltas against without for each setting. */
function deployReport(runs: readonly DeployRun[]): string {
  const header = [
    "corpus",
    "link",
    "hosts",
    "way",
    "wall s",
    "deployer CPU s",
    "machine CPU s",
    "over the links",
    "by delta / whole",
    "deltas s",
    "load",
  ];
  const rows = runs.map((r) => [
    r.corpus,
    r.link,
    String(r.hosts),
    r.way,
    `${r.wallSeconds.toFixed(1)}${r.failed === undefined ? "" : " FAILED"}`,
    r.deployerCpuSeconds.toFixed(1),
    r.machineCpuSeconds.toFixed(1),
    mb(r.linkBytes),
    r.way === "deltas" ? `${r.byDelta} / ${r.whole}` : "-",
    r.deltasSeconds === undefined
      ? "-"
      : `${r.deltasSeconds.toFixed(1)}${r.unfinished ? ` (${r.unfinished} left)` : ""}${r.waited ? " waited" : ""}`,
    r.load.toFixed(1),
  ]);
  const ratios: string[] = [];
  // Each deploy with deltas against the deploy without that came next in the same setting
  // (the bench runs them one after the other).
  runs.forEach((d, i) => {
    if (d.way !== "deltas") return;
    const w = runs
      .slice(i + 1)
      .find(
        (r) =>
          r.way === "whole" && r.corpus === d.corpus && r.link === d.link && r.hosts === d.hosts,
      );
    if (w === undefined) return;
    ratios.push(
      `  ${d.corpus}, ${d.link}, ${d.hosts} host(s): wall with/without deltas ${(d.wallSeconds / w.wallSeconds).toFixed(2)}x, ` +
        `bytes ${ratio(w.linkBytes, d.linkBytes)} fewer, deployer CPU ${d.deployerCpuSeconds.toFixed(1)} s against ${w.deployerCpuSeconds.toFixed(1)} s, ` +
        `machine CPU ${d.machineCpuSeconds.toFixed(1)} s against ${w.machineCpuSeconds.toFixed(1)} s`,
    );
  });
  return [
    "Whole deploys (their build aside), with deltas and with --no-delta, each a fresh rebuild:",
    table([header, ...rows]),
    "wall s: the deploy command, start to end (push, survey, plan, the deltas' computing in the",
    "  background, the rollout, and stopping what is left of the deltas). deployer CPU s: user +",
    "  system of the command and every child it waited for (zstd). machine CPU s: the whole",
    "  machine's busy time meanwhile (the deployer, the cache server, the link's relay, the hosts,",
    "  and anything else running). over the links: bytes through",
    "  the hosts' veths, both ways (ssh included). deltas s: when the fast pass ended (its",
    "  deltas-done), pairs left unfinished, and whether a wave waited for them. load: the",
    "  machine's 1-minute load average before the run (other work shares its cores).",
    ...ratios,
    ...deployMedians(runs),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------

/** The engines measured, in order, from the results. */
function engineNames(results: readonly PairResult[]): string[] {
  return [...new Set(results.flatMap((r) => r.engines.map((e) => e.engine)))];
}

function engineOf(r: PairResult, engine: string): EngineResult | undefined {
  return r.engines.find((e) => e.engine === engine);
}

const ratio = (a: number, b: number): string =>
  Number.isFinite(a / b) ? `${(a / b).toFixed(1)}x` : "n/a";
const secs = (u: { cpuSeconds: number } | undefined): string =>
  u && !Number.isNaN(u.cpuSeconds) ? u.cpuSeconds.toFixed(2) : "-";

/** Per pair: bytes of each way to send the target, and the deltas' ratios. */
function bytesTable(results: readonly PairResult[]): string {
  const engines = engineNames(results);
  const header = ["pair", "NAR", "zstd NAR", "xz NAR", ...engines.map((e) => `${e}`)];
  const rows = results.map((r) => [
    r.pair.name,
    mb(r.narBytes),
    mb(r.zstdBytes),
    mb(r.xzBytes),
    ...engines.map((e) => {
      const x = engineOf(r, e);
      if (x?.bytes === undefined) return "skipped";
      return `${mb(x.bytes)} ${ratio(r.zstdBytes, x.bytes)}/${ratio(r.xzBytes, x.bytes)}${x.ok ? "" : " BAD"}`;
    }),
  ]);
  return table([header, ...rows]);
}

/** Per pair: the host's CPU to apply each delta against decompressing the zstd NAR, and memory. */
function cpuTable(results: readonly PairResult[]): string {
  const engines = engineNames(results);
  const header = ["pair", "unzstd s", "base sha256 s", "xz -6 s"];
  for (const e of engines)
    header.push(`${e} compute s`, "apply s", "apply/unzstd", "peak MB comp/apply");
  const rows = results.map((r) => {
    const row = [r.pair.name, secs(r.unzstd), secs(r.baseCheck), secs(r.xzCompute)];
    for (const e of engines) {
      const x = engineOf(r, e);
      if (x?.compute === undefined || x.apply === undefined) row.push("-", "-", "-", "-");
      else
        row.push(
          secs(x.compute),
          secs(x.apply),
          ratio(x.apply.cpuSeconds, r.unzstd.cpuSeconds),
          `${(x.compute.peakRssBytes / 1e6).toFixed(0)}/${(x.apply.peakRssBytes / 1e6).toFixed(0)}`,
        );
    }
    return row;
  });
  return table([header, ...rows]);
}

const LEGEND = [
  "Delta cells: bytes, then zstd NAR / delta and xz NAR / delta. BAD: the rebuilt NAR differed.",
  "CPU s: user + system of the child process, from wait4(2) (the kernel's precise runtime).",
  "unzstd: the host decompressing the whole zstd NAR; apply: rebuilding the NAR from base + delta.",
  "base sha256: the host's check of its copy of the base, which applying adds (a NAR dump too).",
].join("\n");

function pairsReport(title: string, results: readonly PairResult[]): string {
  const engines = engineNames(results);
  const geo = (of: (r: PairResult, x: EngineResult) => number | undefined, e: string): string => {
    const values = results
      .map((r) => {
        const x = engineOf(r, e);
        return x?.bytes === undefined ? undefined : of(r, x);
      })
      .filter((v): v is number => v !== undefined && v > 0);
    if (values.length < results.length) return "n/a (not every pair)";
    return `${Math.exp(values.reduce((s, v) => s + Math.log(v), 0) / values.length).toFixed(2)}x`;
  };
  return [
    `${title}:`,
    bytesTable(results),
    "",
    cpuTable(results),
    "",
    LEGEND,
    "",
    "Geometric means over the pairs (zstd NAR / delta, xz NAR / delta):",
    ...engines.map(
      (e) =>
        `  ${e.padEnd(16)} ${geo((r, x) => r.zstdBytes / (x.bytes ?? Number.NaN), e)} ` +
        `${geo((r, x) => r.xzBytes / (x.bytes ?? Number.NaN), e)}`,
    ),
  ].join("\n");
}

interface Totals {
  readonly nar: number;
  readonly zstd: number;
  readonly xz: number;
  readonly unzstdCpu: number;
  /** Per engine: delta bytes; bytes sent with the worth rule; CPU; peaks; pairs it ran on. */
  readonly engines: Map<
    string,
    {
      bytes: number;
      sent: number;
      published: number;
      compute: number;
      apply: number;
      unzstd: number;
      peakCompute: number;
      peakApply: number;
      worstApply: number;
      ran: number;
      bad: number;
    }
  >;
}

function totals(results: readonly PairResult[]): Totals {
  const t: Totals = {
    nar: 0,
    zstd: 0,
    xz: 0,
    unzstdCpu: 0,
    engines: new Map(),
  };
  const mut = t as { -readonly [K in keyof Totals]: Totals[K] };
  for (const r of results) {
    mut.nar += r.narBytes;
    mut.zstd += r.zstdBytes;
    mut.xz += r.xzBytes;
    mut.unzstdCpu += r.unzstd.cpuSeconds;
    for (const x of r.engines) {
      if (x.bytes === undefined || x.compute === undefined || x.apply === undefined) continue;
      const e = t.engines.get(x.engine) ?? {
        bytes: 0,
        sent: 0,
        published: 0,
        compute: 0,
        apply: 0,
        unzstd: 0,
        peakCompute: 0,
        peakApply: 0,
        worstApply: Number.NaN,
        ran: 0,
        bad: 0,
      };
      // The deployer publishes a delta only when it is at most DELTA_WORTH_RATIO of the zstd NAR.
      const worth = x.bytes <= DELTA_WORTH_RATIO * r.zstdBytes;
      e.bytes += x.bytes;
      e.sent += worth ? x.bytes : r.zstdBytes;
      e.published += worth ? 1 : 0;
      e.compute += x.compute.cpuSeconds;
      e.apply += x.apply.cpuSeconds;
      e.unzstd += r.unzstd.cpuSeconds;
      e.peakCompute = Math.max(e.peakCompute, x.compute.peakRssBytes);
      e.peakApply = Math.max(e.peakApply, x.apply.peakRssBytes);
      if (r.unzstd.cpuSeconds >= 0.05)
        e.worstApply = Math.max(
          Number.isNaN(e.worstApply) ? 0 : e.worstApply,
          x.apply.cpuSeconds / r.unzstd.cpuSeconds,
        );
      e.ran++;
      e.bad += x.ok ? 0 : 1;
      t.engines.set(x.engine, e);
    }
  }
  return t;
}

function massReport(results: readonly PairResult[]): string {
  const t = totals(results);
  const biggest = [...results].sort((a, b) => b.narBytes - a.narBytes).slice(0, 5);
  const rows = [...t.engines.entries()].map(([engine, e]) => [
    engine,
    `${e.ran}/${results.length}`,
    mb(e.bytes),
    ratio(t.zstd, e.bytes),
    ratio(t.xz, e.bytes),
    `${mb(e.sent)} (${e.published} deltas)`,
    ratio(t.zstd, e.sent),
    e.compute.toFixed(1),
    e.apply.toFixed(1),
    ratio(e.apply, e.unzstd),
    `${(e.peakCompute / 1e6).toFixed(0)}/${(e.peakApply / 1e6).toFixed(0)}`,
    String(e.bad),
  ]);
  return [
    `Mass rebuild, totals over ${results.length} paths: NAR ${mb(t.nar)}, zstd NAR ${mb(t.zstd)}, ` +
      `xz NAR ${mb(t.xz)}; the host decompresses the zstd NARs in ${t.unzstdCpu.toFixed(1)} CPU s.`,
    table([
      [
        "engine",
        "pairs",
        "deltas",
        "zstd/delta",
        "xz/delta",
        `sent (worth rule ${DELTA_WORTH_RATIO})`,
        "zstd/sent",
        "compute CPU s",
        "apply CPU s",
        "apply/unzstd",
        "peak MB comp/apply",
        "bad",
      ],
      ...rows,
    ]),
    "(totals only over the pairs an engine ran on; sent: the delta where it is at most",
    ` ${DELTA_WORTH_RATIO} of the zstd NAR, else the zstd NAR, as the publisher decides)`,
    `Each delta also costs its wrapper, about ${DELTA_WRAPPER_BYTES / 1000} kB (its narinfo, and in its NAR`,
    "delta-info, the target's narinfo and NAR framing): counted in, zstd NAR / sent becomes",
    ...[...t.engines.entries()].map(
      ([engine, e]) =>
        `  ${engine.padEnd(16)} ${ratio(t.zstd, e.sent + e.published * DELTA_WRAPPER_BYTES)}`,
    ),
    "",
    "The five largest paths:",
    bytesTable(biggest),
    "",
    cpuTable(biggest),
    "",
    LEGEND,
  ].join("\n");
}

/** 20 hosts sharing bases: the pairs the publisher computed against the hosts' needs. */
function sharedBaseReport(r: SharedBaseResult): string {
  const t = r.tally;
  const again = r.againTally;
  return [
    `${r.hosts} hosts sharing bases (3 running systems, 2 desired: bench/delta-shared.ts), the real`,
    "planDeltaPairs and publishPlanDeltas into a directory cache, zstd runs counted on PATH:",
    table([
      [
        "(host, path) needs",
        "(host, pair) asks",
        "pairs in the plan",
        "zstd runs",
        "published",
        "skipped",
        "failed",
      ],
      [
        String(r.needs),
        String(r.asks),
        String(r.pairs),
        String(r.zstdRuns),
        String(t?.published ?? "-"),
        String(t?.skipped ?? "-"),
        String(t?.failed ?? "-"),
      ],
    ]),
    `  each delta computed once: ${r.zstdRuns === r.pairs ? "yes" : "NO"} (${r.zstdRuns} zstd runs for ${r.pairs} pairs, ` +
      `${r.asks} asks, ${r.needs} needs); published again (a second deploy): ${r.againZstdRuns} zstd runs, ` +
      `${again?.existing ?? "-"} pairs found existing`,
  ].join("\n");
}

/** Each case's runs of both ways over the held link, their medians, and how much faster nixship's was. */
function linkReport(cases: readonly LinkCase[], shape: LinkShape): string {
  const rows = cases.flatMap((c) =>
    c.runs.map((r) => [
      c.name,
      String(r.round),
      r.way,
      r.wallSeconds.toFixed(1),
      mb(r.linkBytes),
      ((r.linkBytes * 8) / 1e6 / r.wallSeconds).toFixed(1),
      r.hostCpuSeconds.toFixed(2),
      r.delta
        ? `${r.delta.paths} (${mb(r.delta.bytes)}) / ${r.delta.wholePaths}${r.delta.failed ? `, ${r.delta.failed} failed` : ""}`
        : r.skipped !== undefined
          ? `skipped: ${r.skipped}`
          : "-",
    ]),
  );
  const lines = [
    `One lab host (Nix 2.26) updated over a link held to ${shape.rateMbit} Mbit/s each way (tc tbf on its veth) ` +
      `and ${shape.delayMs} ms a round trip (a relay holding each chunk ${shape.delayMs / 2} ms each way), from the cache served on the deployer's side:`,
    table(
      [
        [
          "case",
          "round",
          "way",
          "wall s",
          "over the link",
          "Mbit/s (bytes/wall)",
          "host CPU s",
          "paths by delta (bytes) / whole",
        ],
        ...rows,
      ],
      1,
    ),
    "wall s: the host's command, start to end (nixship's: activate.sh, its switch included; nix copy's:",
    "  the copy alone). over the link: bytes through the host's veth both ways, headers included.",
    "host CPU s: user + system of the host's command and every process it waited for (wait4).",
    "Before each case the host runs the old system, its paths fetched with the link unheld; the",
    "delta tool is on it from then (as after its first update). Before every measured run the host",
    "goes back to the old system and the paths the last run brought are deleted (one unmeasured copy",
    "goes first), so each run fetches the same paths right after the same deletion; the ways take",
    "turns at going first. Each command's stderr, its lines stamped with the seconds since its",
    "start: link-logs/ under --dir.",
  ];
  for (const c of cases) {
    const ours = linkMedians(c.runs, DELTA_WAY);
    const copy = linkMedians(c.runs, COPY_WAY);
    if (!ours || !copy) continue;
    const range = (m: LinkMedians) =>
      `${m.wallSeconds.toFixed(1)} s (${m.runs} runs, ${m.minWallSeconds.toFixed(1)}-${m.maxWallSeconds.toFixed(1)})`;
    lines.push(
      `  ${c.name}: ${c.lacking} paths lacking (${mb(c.lackingNarBytes)} of NAR); deltas published ` +
        `${c.tally.published}, not worth it ${c.tally.skipped}, failed ${c.tally.failed} ` +
        `(${c.publishSeconds.toFixed(0)} s on the deployer, once); medians, nixship ${range(ours)}, ` +
        `nix copy ${range(copy)}; nix copy / nixship: wall ${ratio(copy.wallSeconds, ours.wallSeconds)}, ` +
        `bytes ${ratio(copy.linkBytes, ours.linkBytes)}, host CPU ${ratio(copy.hostCpuSeconds, ours.hostCpuSeconds)}`,
    );
  }
  return lines.join("\n");
}

function targetsReport(
  all: readonly { corpus: string; results: PairResult[] }[],
  link: { readonly cases: readonly LinkCase[]; readonly shape: LinkShape } | undefined,
): string {
  const lines: string[] = ["Targets (printed, not asserted):"];
  const mark = (ok: boolean): string => (ok ? "MET " : "MISS");
  const mass = all.find((c) => c.corpus === "mass rebuild");
  if (mass) {
    const t = totals(mass.results);
    for (const [engine, e] of t.engines) {
      if (e.ran < mass.results.length) continue;
      const r = t.zstd / e.sent;
      lines.push(
        `  ${mark(r >= TARGET_MASS_BYTES)}  mass rebuild, >= ${TARGET_MASS_BYTES}x fewer bytes than the zstd NARs: ${engine.padEnd(14)} ${r.toFixed(1)}x`,
      );
    }
  }
  const massLink = link?.cases.find((c) => c.name.startsWith("mass rebuild"));
  const ours = massLink && linkMedians(massLink.runs, DELTA_WAY);
  const copy = massLink && linkMedians(massLink.runs, COPY_WAY);
  if (link && ours && copy) {
    const r = copy.wallSeconds / ours.wallSeconds;
    const shape = `${link.shape.rateMbit} Mbit/s, ${link.shape.delayMs} ms`;
    lines.push(
      `  ${mark(r >= TARGET_MASS_FASTER)}  mass rebuild, >= ${TARGET_MASS_FASTER}x faster over the held link (${shape}) than nix copy --from (medians): ${r.toFixed(1)}x`,
    );
    const step = ours.wallSeconds / copy.wallSeconds;
    lines.push(
      link.shape.rateMbit >= FAST_LINK_MBIT
        ? `  ${mark(step <= TARGET_STEP_WALL)}  mass rebuild, the host's step within ${TARGET_STEP_WALL}x a whole fetch's wall on a fast link (${shape}; medians): ${step.toFixed(2)}x`
        : `  --    mass rebuild, the host's step within ${TARGET_STEP_WALL}x a whole fetch on a fast link: not judged at ${shape} (--link-mbit ${FAST_LINK_MBIT} --link-delay-ms 1): ${step.toFixed(2)}x`,
    );
  } else if (mass) {
    lines.push(
      `  --    mass rebuild, >= ${TARGET_MASS_FASTER}x faster over the held link: not measured (the link was not run: --only)`,
    );
  }
  const debian = all.find((c) => c.corpus === "debian");
  if (debian) {
    for (const engine of engineNames(debian.results)) {
      const values = debian.results.map(
        (r) => r.zstdBytes / (engineOf(r, engine)?.bytes ?? Number.NaN),
      );
      const ran = values.filter(Number.isFinite);
      const g = Math.exp(ran.reduce((s, v) => s + Math.log(v), 0) / ran.length);
      const note =
        ran.length < values.length
          ? ` (over ${ran.length} of ${values.length}: skipped where bounded)`
          : "";
      lines.push(
        `  ${mark(g >= TARGET_UPDATE_BYTES)}  real updates, >= ${TARGET_UPDATE_BYTES}x fewer bytes (geometric mean): ${engine.padEnd(14)} ${g.toFixed(2)}x${note}`,
      );
    }
    // zstd's patch mode at the highest level each pair ran at (19, or 9 above the bound).
    const best = debian.results.map((r) => {
      const zstd = r.engines.filter((e) => e.engine.startsWith("zstd") && e.bytes !== undefined);
      return r.zstdBytes / (zstd.at(-1)?.bytes ?? Number.NaN);
    });
    const g = Math.exp(best.reduce((s, v) => s + Math.log(v), 0) / best.length);
    lines.push(
      `  ${mark(g >= TARGET_UPDATE_BYTES)}  real updates, >= ${TARGET_UPDATE_BYTES}x fewer bytes (geometric mean): zstd-patch at the highest level run per pair ${g.toFixed(2)}x`,
    );
  }
  for (const { corpus, results } of all) {
    const t = totals(results);
    for (const [engine, e] of t.engines) {
      const r = e.apply / e.unzstd;
      lines.push(
        `  ${Number.isFinite(r) ? mark(r <= TARGET_APPLY_CPU) : "--  "}  ${corpus}: host CPU to apply <= ${TARGET_APPLY_CPU}x decompressing the zstd NAR: ` +
          `${engine.padEnd(14)} ${r.toFixed(2)}x summed, worst pair ${Number.isNaN(e.worstApply) ? "n/a (none took 0.05 s to decompress)" : `${e.worstApply.toFixed(2)}x`}`,
      );
    }
  }
  return lines.join("\n");
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
