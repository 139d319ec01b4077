// Part of `npm run bench:delta` (`--only deploy`): the wall of a whole `nixship deploy` (its
// build of the new systems aside: they are built before; its push, survey, plan, the deltas'
// computing and the rollout counted) with deltas and with `--no-delta`, to lab hosts (Nix 2.26)
// over loopback and over links held to a rate (tc tbf on each host's veth, both ways) and a
// delay (a relay in front of the cache: this kernel has no netem), one host and several sharing
// the pairs (one a wave by default, a rolling deploy; --deploy-parallel). The hosts apply deltas
// with the zstd of the system they run, as by default (or a tool the fleet file names). Each measured deploy is a fresh rebuild (new store paths, the same contents), so
// its deltas are computed anew; the hosts go back to the old system between rounds. The
// deployer's CPU (the command and every child it waited for) and the machine's load are kept.
import { spawn } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { labGateway, labLayout } from "../src/lab/layout.js";
import type { StorePath } from "../src/nix/store-path.js";
import { type RunningServer, startCacheServer } from "../support/serve.js";
import { type DelayRelay, startDelayRelay } from "./delay-relay.js";
import { output, type Pair } from "./delta-corpora.js";
import {
  buildExpr,
  type LinkShape,
  linkCounters,
  massSystems,
  shapeCommands,
} from "./delta-link.js";
import { type LabStore, labsDir } from "./lab-store.js";
import { machineCpuSeconds, median } from "./stats.js";

const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
/** The lab's name: no other session or test uses `dde`. */
const LAB = "dde";
const COMMAND_TIMEOUT_MS = 30 * 60_000;

export interface DeployCase {
  readonly name: string;
  readonly pairs: readonly Pair[];
}

export interface DeployRun {
  readonly corpus: string;
  /** "loopback", or the held link ("50 Mbit/s, 20 ms"). */
  readonly link: string;
  readonly hosts: number;
  readonly way: "deltas" | "whole";
  /** The deploy command, start to end. */
  readonly wallSeconds: number;
  /** CPU (user + system) of the deploy command and every process it waited for (zstd). */
  readonly deployerCpuSeconds: number;
  /**
   * CPU of the whole machine while the deploy ran (/proc/stat's busy time): the deployer, the
   * cache server, the link's relay and the hosts together, and whatever else ran meanwhile.
   */
  readonly machineCpuSeconds: number;
  /** Bytes through the hosts' veths, both ways. */
  readonly linkBytes: number;
  /** Paths the hosts got by delta, and whole (summed over the hosts). */
  readonly byDelta: number;
  readonly whole: number;
  /** The 1-minute load average before the deploy. */
  readonly load: number;
  /** What the deltas' work said (deltas-done's seconds, unfinished; whether any wave waited). */
  readonly deltasSeconds?: number;
  readonly unfinished?: number;
  readonly waited?: number;
  /** Why the deploy failed (a host's failure under the load, say): its figures are not comparable. */
  readonly failed?: string;
  /** Each host's phases, seconds from its first: where its time went. */
  readonly phases?: string;
}

export interface DeploySetup {
  readonly root: string;
  readonly cases: readonly DeployCase[];
  /** undefined: loopback (the link unheld). */
  readonly links: readonly (LinkShape | undefined)[];
  readonly hostCounts: readonly number[];
  /** Hosts a wave after the canary (`deploy --parallel`). */
  readonly parallel: number;
  /**
   * What the hosts apply deltas with: `system`, the zstd in the closure of the system each runs
   * (the systems carry one, as a NixOS system does; the fleet file has no `deltas` key, as by
   * default); `named`, a zstd the fleet file names, realised by each host the first time.
   */
  readonly tool: "system" | "named";
  /** Which ways each case runs, in this order (default both: with deltas, then --no-delta). */
  readonly ways?: readonly ("deltas" | "whole")[];
  /** Where the lab keeps its hosts' stores and its cache (default this machine's disk). */
  readonly store?: LabStore;
  readonly env: NodeJS.ProcessEnv;
  readonly log: (line: string) => void;
}

/** Runs every (case, link, hosts, way) once, in that order, each way after the other. */
export async function deployBench(setup: DeploySetup): Promise<DeployRun[]> {
  const { root, log } = setup;
  const work = join(root, "deploy");
  const labs = labsDir(root, LAB, setup.store ?? "disk", (command, args) =>
    output(command, args, { env: setup.env, timeoutMs: COMMAND_TIMEOUT_MS }),
  );
  const env: NodeJS.ProcessEnv = { ...setup.env, NIXSHIP_LAB_DIR: labs.dir };
  const local = (command: string, args: readonly string[], input?: Buffer) =>
    output(command, args, { env, timeoutMs: COMMAND_TIMEOUT_MS, ...(input ? { input } : {}) });
  const nixship = (...args: string[]) => local(process.execPath, [NIXSHIP_BIN, ...args]);
  const most = Math.max(...setup.hostCounts);
  const tool =
    setup.tool === "named"
      ? await buildExpr(
          local,
          'derivation { name = "zstd-from-debian"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin && cp /usr/bin/zstd $out/bin/zstd"]; PATH = "/usr/bin:/bin"; }',
        )
      : undefined;
  /** The systems' own zstd's version (system.nix's stand-in for nixpkgs' zstd), when they carry one. */
  const systemZstd = setup.tool === "system" ? "1.5.4" : undefined;
  let server: RunningServer | undefined;
  const relays = new Map<number, DelayRelay>();
  let shaped: string[][] = [];
  let labUp = false;
  const unshape = async () => {
    for (const c of shaped) await local(c[0] as string, c.slice(1)).catch(() => "");
    shaped = [];
  };
  const cleanup = async () => {
    await unshape();
    for (const relay of relays.values()) await relay.close();
    relays.clear();
    await server?.stop();
    server = undefined;
    if (labUp) await nixship("lab", "down", "--name", LAB).catch(() => "");
    labUp = false;
    await labs.release();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`  ${signal}: taking the link's rules, the cache server and lab ${LAB} down...`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const runs: DeployRun[] = [];
  try {
    await nixship("lab", "down", "--name", LAB).catch(() => "");
    await labs.prepare();
    log(`  starting lab ${LAB} (${most} hosts, Nix 2.26)...`);
    const lab = JSON.parse(
      await nixship("lab", "up", String(most), "--name", LAB, "--nix", "current", "--json"),
    ) as { number: number; dir: string };
    labUp = true;
    const layout = labLayout(dirname(lab.dir), LAB, lab.number, most);
    const fleetFile = join(lab.dir, "nixship.json");
    const key = join(lab.dir, "cache.sec");
    const fleet = JSON.parse(await readFile(fleetFile, "utf8")) as {
      cache: { url: string; substituter?: string };
      hosts: Record<string, { system: string }>;
      deltas?: { tool: string };
    };
    const names = layout.hosts.map((h) => h.name);
    server = await startCacheServer(
      fleet.cache.url,
      [],
      env,
      `${labGateway(lab.number)}:0`,
      NIXSHIP_BIN,
    );
    const served = new URL(server.url);
    const urlFor = async (shape: LinkShape | undefined): Promise<string> => {
      if (shape === undefined || shape.delayMs === 0) return (server as RunningServer).url;
      let relay = relays.get(shape.delayMs);
      if (relay === undefined) {
        relay = await startDelayRelay(
          labGateway(lab.number),
          { host: served.hostname, port: Number(served.port) },
          shape.delayMs / 2,
        );
        relays.set(shape.delayMs, relay);
      }
      return `http://${relay.address}`;
    };
    /** The fleet file with `hosts` on `system`, fetching from `substituter`. */
    const point = async (hosts: readonly string[], system: StorePath, substituter: string) => {
      for (const h of hosts) (fleet.hosts[h] as { system: string }).system = system;
      fleet.cache.substituter = substituter;
      if (tool === undefined) delete fleet.deltas;
      else fleet.deltas = { tool };
      await writeFile(fleetFile, JSON.stringify(fleet, null, 2));
    };
    const deploy = (events: string | undefined, hosts: readonly string[], ...extra: string[]) =>
      timedDeploy(env, events, [
        "deploy",
        "--fleet",
        fleetFile,
        "--key",
        key,
        "--on",
        hosts.join(","),
        "--json",
        ...extra,
      ]);

    let round = 0;
    for (const c of setup.cases) {
      const caseWork = join(work, c.name.replace(/\W+/g, "-"));
      await output("mkdir", ["-p", caseWork]);
      log(`  ${c.name}: building the old system and deploying it to every host...`);
      const [before] = await massSystems(local, caseWork, c.pairs, "r0", systemZstd);
      await point(names, before, await urlFor(undefined));
      await deploy(undefined, names, "--no-delta");
      for (const shape of setup.links) {
        const link =
          shape === undefined ? "loopback" : `${shape.rateMbit} Mbit/s, ${shape.delayMs} ms`;
        for (const count of setup.hostCounts) {
          const hosts = names.slice(0, count);
          for (const way of setup.ways ?? (["deltas", "whole"] as const)) {
            round++;
            const [, after] = await massSystems(local, caseWork, c.pairs, `r${round}`, systemZstd);
            await point(hosts, after, await urlFor(shape));
            if (shape !== undefined) {
              for (const h of layout.hosts.slice(0, count)) {
                const commands = shapeCommands(h.veth, h.netns, shape.rateMbit);
                for (const command of commands.add)
                  await local(command[0] as string, command.slice(1));
                shaped.push(...commands.del);
              }
            }
            log(`  ${c.name}, ${link}, ${count} host(s), ${way}...`);
            const load = loadavg()[0] ?? 0;
            const counters = async () => {
              let sum = 0;
              for (const h of layout.hosts.slice(0, count)) sum += await linkCounters(h.veth);
              return sum;
            };
            const bytesBefore = await counters();
            const cpuBefore = machineCpuSeconds();
            // Several hosts roll out one a wave: the later ones can take the deltas computed
            // meanwhile (in one wave, every host starts before any delta is there).
            const r = await deploy(
              join(root, "deploy-logs", `${c.name.replace(/\W+/g, "-")}-${round}-${way}.ndjson`),
              hosts,
              "--parallel",
              String(setup.parallel),
              ...(way === "whole" ? ["--no-delta"] : []),
            );
            const machineCpu = machineCpuSeconds() - cpuBefore;
            const linkBytes = (await counters()) - bytesBefore;
            await unshape();
            const run = {
              corpus: c.name,
              link,
              hosts: count,
              way,
              load,
              linkBytes,
              machineCpuSeconds: machineCpu,
              ...r,
            };
            runs.push(run);
            // Told as it comes: a later failure (or an interrupt) keeps what was measured.
            log(
              `    ${run.failed === undefined ? "" : `FAILED (${run.failed}): `}wall ${run.wallSeconds.toFixed(1)} s, deployer CPU ${run.deployerCpuSeconds.toFixed(1)} s, machine CPU ${run.machineCpuSeconds.toFixed(1)} s, load ${load.toFixed(1)}, by delta ${run.byDelta} / whole ${run.whole}, ${(linkBytes / 1e6).toFixed(1)} MB over the links${run.waited ? ", a wave waited" : ""}`,
            );
            if (run.phases) log(`      ${run.phases}`);
            // Back to the old system for the next round (its paths are on the hosts already).
            await point(hosts, before, await urlFor(undefined));
            await deploy(undefined, hosts, "--no-delta");
          }
        }
      }
    }
    return runs;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

/** The deployer's events whose first time is told of each run. */
const STEPS = new Set([
  "push-start",
  "push-done",
  "plan",
  "deltas-start",
  "deltas-done",
  "deltas-wait",
  "wave-start",
  "summary",
]);

/** Runs `nixship ARGS` under /usr/bin/time: its wall, its CPU and children's, and its events. */
async function timedDeploy(
  env: NodeJS.ProcessEnv,
  /** Where its events go, stamped (each host's log among them): to see where time went. */
  eventsFile: string | undefined,
  args: readonly string[],
): Promise<
  Pick<
    DeployRun,
    | "wallSeconds"
    | "deployerCpuSeconds"
    | "byDelta"
    | "whole"
    | "deltasSeconds"
    | "unfinished"
    | "waited"
    | "failed"
    | "phases"
  >
> {
  const { stdout, stderr, code } = await new Promise<{
    stdout: string;
    stderr: string;
    code: number;
  }>((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(
      "/usr/bin/time",
      ["-f", "BENCH-TIME %e %U %S", process.execPath, NIXSHIP_BIN, ...args],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => {
      // Each event line stamped with when it came: where the deployer's time went.
      const at = ((performance.now() - started) / 1000).toFixed(2);
      const stamped = d.replace(/\n\{/g, `\n{"benchAt":${at},`);
      out +=
        out === "" || out.endsWith("\n") ? stamped.replace(/^\{/, `{"benchAt":${at},`) : stamped;
    });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const timer = setTimeout(() => proc.kill("SIGTERM"), COMMAND_TIMEOUT_MS);
    proc.on("error", reject);
    proc.on("close", (c) => {
      clearTimeout(timer);
      resolve({ stdout: out, stderr: err, code: c ?? -1 });
    });
  });
  if (eventsFile !== undefined) {
    await mkdir(dirname(eventsFile), { recursive: true });
    await writeFile(eventsFile, stdout);
  }
  const time = /BENCH-TIME (\S+) (\S+) (\S+)/.exec(stderr);
  const events = stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  const failures = events.flatMap((e) => {
    const r = (e as { result?: { host: string; outcome: { status: string; message?: string } } })
      .result;
    return e.type === "host-done" && r !== undefined && r.outcome.status !== "activated"
      ? [`${r.host}: ${r.outcome.status} ${r.outcome.message ?? ""}`.trim()]
      : [];
  });
  if (code !== 0 && failures.length === 0)
    throw new Error(`nixship ${args.join(" ")} exited ${code}:\n${stderr.slice(-4000)}`);
  // The deployer's steps: when each first came (seconds from the command's start).
  const steps = new Map<string, number>();
  for (const e of events) {
    const type = String(e.type);
    const key = type === "wave-start" ? `wave ${String(e.wave)}` : type;
    if (STEPS.has(type) && !steps.has(key)) steps.set(key, Number(e.benchAt));
  }
  const phases = new Map<string, string[]>([
    ["deployer", [...steps].map(([k, t]) => `${k} ${t.toFixed(1)}`)],
  ]);
  for (const e of events) {
    if (e.type !== "host-phase") continue;
    const { host, phase, elapsed } = e as { host: string; phase: string; elapsed: number };
    phases.set(host, [...(phases.get(host) ?? []), `${phase} ${elapsed.toFixed(1)}`]);
  }
  const summary = events.find((e) => e.type === "summary") as
    | { results: { outcome: { delta?: { paths?: number; wholePaths?: number } } }[] }
    | undefined;
  let byDelta = 0;
  let whole = 0;
  for (const r of summary?.results ?? []) {
    byDelta += r.outcome.delta?.paths ?? 0;
    whole += r.outcome.delta?.wholePaths ?? 0;
  }
  const done = events.find((e) => e.type === "deltas-done") as
    | { seconds: number; unfinished?: number }
    | undefined;
  const waits = events.filter((e) => e.type === "deltas-wait").length;
  return {
    wallSeconds: Number(time?.[1] ?? Number.NaN),
    deployerCpuSeconds: Number(time?.[2] ?? Number.NaN) + Number(time?.[3] ?? Number.NaN),
    byDelta,
    whole,
    ...(done === undefined ? {} : { deltasSeconds: done.seconds }),
    ...(done?.unfinished === undefined ? {} : { unfinished: done.unfinished }),
    ...(waits > 0 ? { waited: waits } : {}),
    ...(code === 0 ? {} : { failed: failures.join("; ").slice(0, 300) }),
    ...(phases.size === 0
      ? {}
      : { phases: [...phases].map(([h, p]) => `${h}: ${p.join(", ")}`).join("; ") }),
  };
}

/** The issue's targets for one host and the mass rebuild: the least speed-up by link (loopback: the most slow-down). */
const DEPLOY_TARGETS: readonly { readonly link: RegExp; readonly faster: number }[] = [
  { link: /^10 Mbit\/s/, faster: 10 },
  { link: /^50 Mbit\/s/, faster: 5 },
  { link: /^loopback$/, faster: 1 / 1.1 },
];

/**
 * Each (corpus, link, hosts)'s median walls with and without deltas over its runs, and their
 * ratio; again without the first deploy with deltas after a deploy over another link (the bench's
 * setup is over loopback), which judges its first wave by that link's recorded pace; and, for
 * one host and the mass rebuild, the deploy targets against those medians. A target missed says
 * the floor this machine's cores set: the CPU the deploys with deltas took of the whole machine
 * (median, of the same runs), spread over every core, against the wall the target asks for.
 */
export function deployMedians(
  runs: readonly DeployRun[],
  cores: number = availableParallelism(),
): string[] {
  const ok = runs.filter((r) => r.failed === undefined);
  const groups = new Map<
    string,
    {
      run: DeployRun;
      deltas: number[];
      settled: number[];
      whole: number[];
      /** The machine's CPU in the deploys with deltas, all of them and after each link's first. */
      cpu: number[];
      settledCpu: number[];
    }
  >();
  let previousLink: string | undefined;
  let firstOnLink = true;
  for (const r of ok) {
    if (r.link !== previousLink) firstOnLink = true;
    previousLink = r.link;
    const key = `${r.corpus}, ${r.link}, ${r.hosts} host(s)`;
    const g = groups.get(key) ?? {
      run: r,
      deltas: [],
      settled: [],
      whole: [],
      cpu: [],
      settledCpu: [],
    };
    groups.set(key, g);
    if (r.way === "whole") {
      g.whole.push(r.wallSeconds);
      continue;
    }
    g.deltas.push(r.wallSeconds);
    g.cpu.push(r.machineCpuSeconds);
    if (!firstOnLink) {
      g.settled.push(r.wallSeconds);
      g.settledCpu.push(r.machineCpuSeconds);
    }
    firstOnLink = false;
  }
  const lines = ["Medians by case (with deltas / --no-delta, walls in seconds):"];
  const targets: string[] = [];
  for (const [key, g] of groups) {
    if (g.deltas.length === 0 || g.whole.length === 0) {
      lines.push(
        `  ${key}: one way only (${g.deltas.length} with deltas, ${g.whole.length} without)`,
      );
      continue;
    }
    const whole = median(g.whole);
    const all = median(g.deltas);
    const settled = g.settled.length > 0 ? median(g.settled) : undefined;
    lines.push(
      `  ${key}: ${all.toFixed(1)} (${g.deltas.length} run${g.deltas.length === 1 ? "" : "s"}, ${Math.min(...g.deltas).toFixed(1)}-${Math.max(...g.deltas).toFixed(1)}) / ${whole.toFixed(1)} (${g.whole.length}): ${(whole / all).toFixed(2)}x faster` +
        (settled === undefined
          ? ""
          : `; after each link's first: ${settled.toFixed(1)} (${g.settled.length}), ${(whole / settled).toFixed(2)}x`),
    );
    const target = DEPLOY_TARGETS.find((t) => t.link.test(g.run.link));
    if (target !== undefined && g.run.corpus.startsWith("mass rebuild") && g.run.hosts === 1) {
      const judged = whole / (settled ?? all);
      const want =
        target.faster >= 1
          ? `>= ${target.faster}x faster`
          : `at most ${(1 / target.faster).toFixed(1)}x slower`;
      targets.push(
        `  ${judged >= target.faster ? "MET " : "MISS"}  ${key}: ${want} than --no-delta (medians${settled === undefined ? "" : ", after each link's first"}): ${judged.toFixed(2)}x`,
      );
      if (judged < target.faster) {
        const cpu = median(settled === undefined ? g.cpu : g.settledCpu);
        const floor = cpu / cores;
        const asked = whole / target.faster;
        targets.push(
          `        the machine's CPU in those deploys with deltas: ${cpu.toFixed(1)} s (median), at least ${floor.toFixed(1)} s of wall on ${cores} core${cores === 1 ? "" : "s"}; the target asks for at most ${asked.toFixed(1)} s` +
            (floor > asked ? ": out of reach on this machine's cores" : ""),
        );
      }
    }
  }
  return [
    ...lines,
    ...(targets.length > 0 ? ["Deploy targets (printed, not asserted):", ...targets] : []),
  ];
}
