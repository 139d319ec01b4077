// The fleet benchmark (`npm run bench:fleet`): `nixship deploy` to labs of real hosts (network
// namespaces, own /nix, real sshd; 20 by default, `--hosts 20,50,100,200,1000` for the scale
// curve; past a lab's 200 hosts, several labs joined into one fleet: bench/fleet-labs.ts),
// against a sequential `nix-copy-closure` + switch loop (`nix-copy-closure` + `ssh ...
// switch-to-configuration` per host, one host after the other), on the same hosts in the same run. Each scenario's cost is
// measured apart for the deployer (its process and every one it starts, ssh clients and masters
// included: a control group of its own) and for the hosts (every process in their namespaces),
// with the SSH handshakes each host accepted. Prints tables, ratios and whether the targets are
// met (`--plot FILE` draws the scale curve as a PNG in Chromium); asserts nothing.
// `--host-sh bash`: the hosts' sh is bash, as NixOS's (`lab up --sh bash`), not the machine's.
import { rmSync } from "node:fs";
import { appendFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sshArgs } from "../src/delivery/ssh-transport.js";
import type { DeployEvent } from "../src/deploy/events.js";
import { DEFAULT_MAX_CONNECTIONS } from "../src/fleet/fleet.js";
import { parseHostShell } from "../src/lab/host-shell.js";
import { MAX_LAB_HOSTS } from "../src/lab/layout.js";
import { mapLimit } from "../src/util/pool.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { CgroupMeter, cgroupsAvailable, type RssPeak } from "./cgroup-meter.js";
import { type BenchFleet, fleetUp, labsDown, labsDownSync, MAX_BENCH_HOSTS } from "./fleet-labs.js";
import { plotScale, type ScalePoint } from "./fleet-plot.js";
import { cpuTimes, linearFit, median, table } from "./stats.js";
import { tail, timed } from "./timed.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));
const SYSTEMS = ["web-v1", "web-v2", "web-v3"] as const;
type System = (typeof SYSTEMS)[number];
// Every command is bounded; a deploy or loop of 20 hosts takes seconds, of 1,000 minutes.
const COMMAND_TIMEOUT_S = 240;
/** A deploy's or the loop's bound: 240 s, and 1.5 s more per host (the loop's ~0.5 s, thrice). */
const commandTimeout = (hosts: number) => COMMAND_TIMEOUT_S + Math.ceil(1.5 * hosts);
const SMALL_CHANGE_TARGET_S = 10;
const RATIO_TARGET = 5;
/** Targets for the deployer's own cost, printed, never asserted. */
const RSS_PER_HOST_TARGET_MB = 1;
const HANDSHAKES_PER_HOST_TARGET = 2;
const LARGEST_LAB_TARGET_S = 60;
/** More targets: CPU per host at most one login's plus this; peak RSS at 1,000 hosts. */
const CPU_OVER_LOGIN_TARGET_MS = 40;
/** A deploy's CPU per host against the sequential loop's at the same size. */
const CPU_OVER_LOOP_TARGET_MS = 40;
const HOSTS_CPU_RATIO_TARGET = 2;
const TOTAL_CPU_RATIO_TARGET = 1.5;
const RSS_AT_1000_TARGET_MB = 500;
/** "No growth beyond the bound": a small record per host, far below a master's 1.6 MB. */
const RSS_BEYOND_BOUND_TARGET_MB = 0.1;
/** Logins timed one after the other for the CPU of one (`ssh -o ControlMaster=no HOST true`). */
const LOGINS = 20;
/** Masters held at once to measure what one costs (ssh -MNf, /proc/PID/smaps_rollup). */
const MASTERS = 16;
// Never a substituter: nothing here may leave the machine.
const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };

type Tool = "nixship" | "loop";

interface Scenario {
  readonly id: string;
  readonly tool: Tool;
  readonly from: System | "fresh";
  readonly to: System;
  readonly what: string;
}

/**
 * The order is the design. Both "small change" scenarios move every host to a system it has
 * never had, which adds two paths to its store (the toplevel and its etc; the shared service
 * code is already there): the same work for each tool. The "known system" pair switches to a
 * system every host already holds (no path to copy), with the loop going first this time, so
 * neither tool always runs first.
 */
const SCENARIOS: readonly Scenario[] = [
  { id: "first", tool: "nixship", from: "fresh", to: "web-v1", what: "first deploy, fresh hosts" },
  { id: "small", tool: "nixship", from: "web-v1", to: "web-v2", what: "small change" },
  { id: "small", tool: "loop", from: "web-v2", to: "web-v3", what: "small change" },
  { id: "known", tool: "loop", from: "web-v3", to: "web-v1", what: "to a system already held" },
  { id: "known", tool: "nixship", from: "web-v1", to: "web-v3", what: "to a system already held" },
];

interface Sample {
  readonly scenario: Scenario;
  readonly seconds: number;
  /** Store paths the hosts actually received (from the copy's or the substituter's log). */
  readonly copied: number;
  readonly serving: { readonly ok: boolean; readonly detail: string };
  /** The whole machine's CPU use during the scenario (other work on it included). */
  readonly cpuBusy: number;
  /** nixship only: where the time went, from its NDJSON events. */
  readonly phases?: string;
  /** Hosts in the lab. */
  readonly hosts: number;
  /** The deployer's own cost: its process and all it started (ssh clients and masters). */
  readonly deployer?: { readonly cpuSeconds: number; readonly rss: RssPeak };
  /** Every process in the hosts' namespaces (sshd, shells, Nix, services). */
  readonly hostsCpuSeconds?: number;
  /** SSH handshakes (accepted logins) per host in the scenario: mean and most. */
  readonly handshakes: { readonly mean: number; readonly max: number };
  /** nixship past its bound on held connections: the logins its plan said it would make. */
  readonly plannedLogins?: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      hosts: { type: "string", default: "20" },
      runs: { type: "string", default: "3" },
      parallel: { type: "string", default: "20" },
      plot: { type: "string" },
      // Writes the scale points (what --plot draws) as JSON, for bench/fleet-replot.ts.
      points: { type: "string" },
      kex: { type: "string" },
      // The hosts' sh, as lab up --sh takes it: bash (NixOS's) or system (the default, dash here).
      "host-sh": { type: "string" },
      // Only the first deploy and the small change (no switch to a known system): for big sizes.
      "small-only": { type: "boolean", default: false },
      // Writes a V8 CPU profile of each nixship deploy into this directory (node --cpu-prof).
      "cpu-prof": { type: "string" },
    },
  });
  if (values["cpu-prof"] !== undefined) {
    deployNodeFlags = ["--cpu-prof", `--cpu-prof-dir=${values["cpu-prof"]}`];
  }
  const hostCounts = [
    ...new Set(
      String(values.hosts)
        .split(",")
        .map((n) => Math.min(MAX_BENCH_HOSTS, Math.max(2, Number(n) || 20))),
    ),
  ];
  // Sizes run in the order given (the largest first, say, so a long run cut short has it);
  // they are reported in ascending order.
  const runs = Math.min(5, Math.max(1, Number(values.runs) || 3));
  const parallel = Math.min(200, Math.max(1, Number(values.parallel) || 20));
  // OpenSSH's key exchange for both tools (the lab's ssh_config, which nixship and the loop
  // read): its default, post-quantum, costs the client several times a curve25519 exchange.
  const kex = values.kex;
  if (kex !== undefined && !/^[a-z0-9@.,+-]+$/.test(kex)) throw new Error(`--kex: ${kex}`);
  const hostSh = parseHostShell(values["host-sh"] ?? "system");
  const scenarios = values["small-only"] ? SCENARIOS.filter((s) => s.id !== "known") : SCENARIOS;
  // The bench's own groups (its pid in their names): two benches at once never share one.
  const meters = cgroupsAvailable()
    ? {
        deployer: await CgroupMeter.create(`nixship-bench-deployer-${process.pid}`),
        hosts: await CgroupMeter.create(`nixship-bench-hosts-${process.pid}`),
      }
    : undefined;
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-fleet-"));
  const labEnv: NodeJS.ProcessEnv = { ...ENV, NIXSHIP_LAB_DIR: join(work, "labs") };
  const labDownSync = (): void => {
    labsDownSync(NIXSHIP, labEnv);
    rmSync(work, { recursive: true, force: true });
  };
  const samples: Sample[] = [];
  const calibrations: Calibration[] = [];
  let failed: Error | undefined;
  /** The sizes measured whole (every run, every scenario). */
  const completed: number[] = [];
  process.once("SIGINT", () => {
    console.error(
      "\nInterrupted: taking the labs down, then reporting the sizes measured whole...",
    );
    labDownSync();
    printReports(samples, completed, calibrations, hostCounts, runs);
    void Promise.all([meters?.deployer.remove(), meters?.hosts.remove()]).finally(() =>
      process.exit(130),
    );
  });
  try {
    console.log(
      `node ${process.version}, ${(await output("nix", ["--version"])).trim()}, ` +
        `${availableParallelism()} CPUs, ${loadAverage()}`,
    );
    console.log(`\nBuilding the example systems ${SYSTEMS.join(", ")}...`);
    const paths = await buildSystems();
    for (const name of SYSTEMS) console.log(`  ${name}  ${paths[name]}`);
    printDesign(hostCounts, runs, parallel, meters !== undefined, scenarios);
    console.log(
      `The hosts' sh: ${hostSh === "system" ? "the machine's (lab up's default)" : hostSh}`,
    );
    console.log(
      `SSH key exchange: ${kex ?? "OpenSSH's default"}` +
        (kex === undefined
          ? " (nixship's settling logins offer curve25519-sha256 first when that default is sntrup761x25519: delivery/ssh-settle-kex.ts)"
          : ""),
    );
    sizes: for (const hostCount of hostCounts) {
      for (let r = 0; r < runs; r++) {
        console.log(`\nRun ${r + 1}/${runs}: ${hostCount} hosts (${loadAverage()})`);
        const started = performance.now();
        const lab = await fleetUp(
          NIXSHIP,
          hostCount,
          labEnv,
          join(work, `fleet-${hostCount}`),
          hostSh,
        ).catch((err: Error) => err);
        if (lab instanceof Error) {
          // The largest size this machine holds is the last one measured: say why, and report.
          console.log(`  ${hostCount} hosts do not come up here: ${lab.message}`);
          continue sizes;
        }
        if (kex !== undefined) {
          await appendFile(lab.files.sshConfig, `\nHost *\n  KexAlgorithms ${kex}\n`);
        }
        console.log(
          `  ${lab.labs.length === 1 ? "lab" : `${lab.labs.length} labs`} up in ${secs((performance.now() - started) / 1000)} s: ` +
            lab.labs
              .map((l) => `${l.hosts[0]?.name}..${l.hosts.at(-1)?.name} on 10.231.${l.number}.0/24`)
              .join(", ") +
            `; the cache served on ${lab.cacheAddress}`,
        );
        try {
          for (const scenario of scenarios) {
            await closeSshConnections(lab);
            const sample = await measured(lab, meters, () =>
              scenario.tool === "nixship"
                ? nixshipDeploy(lab, scenario, parallel, meters?.deployer)
                : sequentialLoop(lab, scenario, paths[scenario.to], meters?.deployer),
            ).catch((err: Error) => err);
            if (sample instanceof Error) {
              failed = sample;
              console.log(`  ${label(scenario)} failed at ${hostCount} hosts: ${sample.message}`);
              break;
            }
            samples.push(sample);
            console.log(
              `  ${label(scenario).padEnd(44)} ${secs(sample.seconds).padStart(6)} s  ` +
                `${sample.copied} paths copied  CPU ${(sample.cpuBusy * 100).toFixed(0)}% busy  ` +
                `serves ${scenario.to}: ${sample.serving.detail}` +
                `\n      ${costLine(sample)}` +
                (sample.phases ? `\n      ${sample.phases}` : ""),
            );
          }
          if (meters !== undefined && failed === undefined) {
            await closeSshConnections(lab);
            const calibration = await calibrate(lab, meters.deployer, work);
            calibrations.push(calibration);
            console.log(`  ${calibrationLine(calibration)}`);
          }
        } finally {
          await closeSshConnections(lab);
          await labsDown(NIXSHIP, labEnv);
        }
        // A size that failed part-way is left out of the report; the next size is tried.
        if (failed !== undefined) {
          failed = undefined;
          continue sizes;
        }
      }
      completed.push(hostCount);
    }
  } finally {
    labDownSync();
    await meters?.deployer.remove();
    await meters?.hosts.remove();
  }
  const done = printReports(samples, completed, calibrations, hostCounts, runs);
  if (values.points !== undefined && done.length > 0) {
    await writeFile(
      values.points,
      `${JSON.stringify(scalePoints(samples, done, calibrations), null, 2)}\n`,
    );
    console.log(`\nThe scale points: ${values.points}`);
  }
  if (values.plot !== undefined && done.length > 0) {
    await plotScale(scalePoints(samples, done, calibrations), values.plot);
    console.log(`\nThe scale curve: ${values.plot}`);
  }
}

/** Prints each size's results and the scale report, for the sizes measured whole; gives them. */
function printReports(
  samples: readonly Sample[],
  completed: readonly number[],
  calibrations: readonly Calibration[],
  hostCounts: readonly number[],
  runs: number,
): number[] {
  console.log(`  (${loadAverage()})`);
  const done = [...completed].sort((a, b) => a - b);
  const kept = samples.filter((s) => done.includes(s.hosts));
  if (done.length < hostCounts.length) {
    const left = hostCounts.filter((n) => !done.includes(n));
    console.log(
      `\nMeasured whole: ${done.join(", ") || "no size"} hosts; not ${left.join(", ")} (above).`,
    );
  }
  for (const hostCount of done) {
    console.log(
      `\n${report(
        kept.filter((s) => s.hosts === hostCount),
        hostCount,
        runs,
      )}`,
    );
  }
  if (done.length > 0) console.log(`\n${scaleReport(kept, done, calibrations)}`);
  return done;
}

type Run = Omit<Sample, "cpuBusy" | "hosts" | "handshakes" | "deployer" | "hostsCpuSeconds">;

/**
 * Runs one scenario with its costs measured: the deployer's control group (CPU, resident sets
 * sampled every 100 ms), the hosts' (every process in their namespaces, moved there first), the
 * handshakes each host's sshd logged, and the whole machine's busy share.
 */
async function measured(
  lab: BenchFleet,
  meters: { deployer: CgroupMeter; hosts: CgroupMeter } | undefined,
  run: () => Promise<Run>,
): Promise<Sample> {
  const before = await acceptedLogins(lab);
  if (meters) {
    await meters.hosts.add(await labPids(lab));
    await meters.hosts.reset();
    await meters.deployer.reset();
  }
  const stopRss = meters?.deployer.sampleRss(100);
  const cpu = cpuTimes();
  // The sampling stops whatever the run does: a failed scenario left its timer running, and
  // the bench, its reports printed, never exited.
  const result = await run().catch(async (err: unknown) => {
    await stopRss?.();
    throw err;
  });
  const cpuBusy = cpuBusySince(cpu);
  const rss = await stopRss?.();
  const after = await acceptedLogins(lab);
  const perHost = lab.hosts.map((h) => (after.get(h.name) ?? 0) - (before.get(h.name) ?? 0));
  return {
    ...result,
    cpuBusy,
    hosts: lab.hosts.length,
    handshakes: {
      mean: perHost.reduce((a, b) => a + b, 0) / Math.max(1, perHost.length),
      max: Math.max(0, ...perHost),
    },
    ...(meters && rss
      ? {
          deployer: { cpuSeconds: (await meters.deployer.usage()).cpuSeconds, rss },
          hostsCpuSeconds: (await meters.hosts.usage()).cpuSeconds,
        }
      : {}),
  };
}

/** The processes of every lab host: everything in its network namespace. */
async function labPids(lab: BenchFleet): Promise<number[]> {
  const lists = await mapLimit(lab.hosts, 32, (h) =>
    timed("ip", ["netns", "pids", h.netns], ENV, 10),
  );
  return lists.flatMap((r) => r.stdout.split("\n").filter(Boolean).map(Number));
}

/** Logins each host's sshd accepted so far (one per SSH handshake), from its log. */
async function acceptedLogins(lab: BenchFleet): Promise<Map<string, number>> {
  const counts = await mapLimit(lab.hosts, 32, async (h) => {
    const log = await readFile(join(h.labDir, "hosts", h.name, "sshd.log"), "utf8").catch(() => "");
    return log.split("\n").filter((l) => l.includes("Accepted publickey for ")).length;
  });
  return new Map(lab.hosts.map((h, i) => [h.name, counts[i] ?? 0]));
}

/** One line of what a scenario cost the deployer and the hosts. */
function costLine(s: Sample): string {
  const hs =
    `SSH handshakes per host ${s.handshakes.mean.toFixed(2)} (most ${s.handshakes.max})` +
    (s.plannedLogins === undefined
      ? ""
      : `, the plan said ${(s.plannedLogins / s.hosts).toFixed(2)} past the bound of ${DEFAULT_MAX_CONNECTIONS}`);
  if (s.deployer === undefined || s.hostsCpuSeconds === undefined) return hs;
  return (
    `deployer ${s.deployer.cpuSeconds.toFixed(2)} CPU-s (${ms(s.deployer.cpuSeconds / s.hosts)} ms/host), ` +
    `peak RSS ${mb(s.deployer.rss.sumBytes)} MB (PSS ${mb(s.deployer.rss.pssBytes)} MB) in ${s.deployer.rss.processes} processes ` +
    `(largest ${mb(s.deployer.rss.largestBytes)} MB; at the peak ${Object.entries(
      s.deployer.rss.byCommand,
    )
      .sort(([, a], [, b]) => b.bytes - a.bytes)
      .map(([name, x]) => `${x.count} ${name} ${mb(x.bytes)} MB`)
      .join(", ")}); hosts ${s.hostsCpuSeconds.toFixed(2)} CPU-s ` +
    `(${ms(s.hostsCpuSeconds / s.hosts)} ms/host); ${hs}`
  );
}

const ms = (seconds: number) => (seconds * 1000).toFixed(0);
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function printDesign(
  hostCounts: readonly number[],
  runs: number,
  parallel: number,
  metered: boolean,
  scenarios: readonly Scenario[],
): void {
  console.log(
    [
      "",
      `Design: on ${hostCounts.join(", then ")} lab hosts${runs > 1 ? " (fresh labs per run)" : ""}, in this order:`,
      ...scenarios.map((s, i) => `  ${i + 1}. ${label(s)}: ${s.what}`),
      `Past ${MAX_LAB_HOSTS} hosts (a lab's most), labs of at most ${MAX_LAB_HOSTS} joined into one fleet: one`,
      "fleet file, ssh_config and known_hosts; the cache served on the first lab's bridge address,",
      "which the other labs' hosts reach by a route the bench adds (bench/fleet-labs.ts).",
      `nixship holds at most ${DEFAULT_MAX_CONNECTIONS} ssh masters (--max-connections' default); hosts beyond connect again for their wave.`,
      "A small change moves every host to a system it never had: two new store paths per host",
      "(the toplevel and its etc/, a few kB; the service code they share is already there). Both",
      "tools get one such change of the same size, v1->v2 for nixship and v2->v3 for the loop.",
      "Then both switch to a system the hosts already hold (nothing to copy), the loop first.",
      "Every scenario starts with no SSH connection open (ssh -O exit on every host before).",
      "",
      `nixship: \`nixship deploy --fleet <lab>/nixship.json --key <lab>/cache.sec`,
      `  --serve-cache 10.231.L.1:0 --parallel ${parallel} --canary 1 --json\`, default confirm window; its`,
      "  time includes evaluating the flake, the (no-op) build, signing and pushing to the cache,",
      "  asking every host what it runs, the canary, health checks and confirmations.",
      "sequential loop, one host after the other, hosts by their ssh_config names:",
      "  NIX_SSHOPTS='-F <lab>/ssh_config' nix-copy-closure --to root@HOST PATH",
      '  ssh -F <lab>/ssh_config HOST "nix-env -p /nix/var/nix/profiles/system --set PATH &&',
      '    PATH/bin/switch-to-configuration switch"',
      "  It is handed the store path already built (a real script would evaluate first), does no",
      "  health check and no rollback. Signatures: the hosts' nix.conf has require-sigs = true and",
      "  trusts no key, yet nothing needs signing: nix-copy-closure imports through",
      "  `nix-store --serve --write`, run as root on the host against its own store, which Nix",
      "  treats as trusted and does not check signatures for. That is what such loops rely on;",
      "  the loop is run exactly as written, with nothing signed and no option changed.",
      metered
        ? "Costs: the deployer (the command and every process it starts, ssh masters included) and the hosts (every process in their namespaces) each in a control group of the bench's own: CPU-seconds, and the deployer's resident sets sampled every 100 ms (a sum, shared pages counted per process). Handshakes: logins each host's sshd accepted." +
          `\nAt each size, after the scenarios: the deployer-side CPU of one login with the operator's key exchange (${LOGINS} \`ssh -o ControlMaster=no HOST true\` one after the other, in the deployer's group), and what one held ssh master costs (${MASTERS} \`ssh -M -N -f HOST\` held at once; /proc/PID/smaps_rollup of each).`
        : "Costs: no control groups here (not root, or no cgroup file system): CPU and memory apart are not measured.",
    ].join("\n"),
  );
}

/** What one login and one held master cost the deployer, measured at one lab size. */
interface Calibration {
  readonly hosts: number;
  /** CPU of one `ssh -o ControlMaster=no HOST true`, ms (the mean of LOGINS in a row). */
  readonly loginCpuMs: number;
  /** One held master (medians over MASTERS held at once), KiB. */
  readonly master: { readonly pssKb: number; readonly privateKb: number; readonly rssKb: number };
}

/**
 * Measures, in the deployer's group, the CPU of one login (fresh, no shared connection; the
 * operator's key exchange: the fleet's ssh_config, OpenSSH's default unless --kex) and the
 * memory of one held master, on hosts spread over the labs.
 */
async function calibrate(lab: BenchFleet, meter: CgroupMeter, work: string): Promise<Calibration> {
  const spread = (n: number) =>
    Array.from(
      { length: Math.min(n, lab.hosts.length) },
      (_, i) => lab.hosts[Math.floor((i * lab.hosts.length) / Math.min(n, lab.hosts.length))],
    ).map((h) => h?.name as string);
  const ssh = ["-F", lab.files.sshConfig];
  await meter.reset();
  const logins = spread(LOGINS);
  const r = await timed(
    "sh",
    [
      "-c",
      'for h in "$@"; do ssh -F "$SSH_CONFIG" -o ControlMaster=no -o ControlPath=none "$h" true || exit 1; done',
      "sh",
      ...logins,
    ],
    { ...ENV, SSH_CONFIG: lab.files.sshConfig },
    COMMAND_TIMEOUT_S,
    meter,
  );
  if (r.code !== 0) throw new Error(`ssh ... true exited ${r.code}:\n${tail(r.stderr)}`);
  const loginCpuMs = ((await meter.usage()).cpuSeconds * 1000) / logins.length;
  const masters = spread(MASTERS);
  const socket = (h: string) => join(work, `pm-${h}`);
  const kbs: { pssKb: number; privateKb: number; rssKb: number }[] = [];
  try {
    for (const h of masters) {
      const master = [...ssh, "-M", "-S", socket(h), "-o", "ControlPersist=no", "-N", "-f", h];
      const up = await timed("ssh", master, ENV, 30, meter);
      if (up.code !== 0) throw new Error(`ssh -M -N -f ${h} exited ${up.code}: ${tail(up.stderr)}`);
    }
    for (const h of masters) {
      const check = await timed("ssh", [...ssh, "-S", socket(h), "-O", "check", h], ENV, 10);
      const pid = /pid=(\d+)/.exec(check.stderr)?.[1];
      if (pid === undefined) throw new Error(`no master for ${h}: ${check.stderr}`);
      const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
      const kb = (name: string) =>
        Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(rollup)?.[1] ?? Number.NaN);
      kbs.push({
        pssKb: kb("Pss"),
        privateKb: kb("Private_Clean") + kb("Private_Dirty"),
        rssKb: kb("Rss"),
      });
    }
  } finally {
    await mapLimit(masters, 16, (h) =>
      timed("ssh", [...ssh, "-S", socket(h), "-O", "exit", h], ENV, 10),
    );
  }
  return {
    hosts: lab.hosts.length,
    loginCpuMs,
    master: {
      pssKb: median(kbs.map((k) => k.pssKb)),
      privateKb: median(kbs.map((k) => k.privateKb)),
      rssKb: median(kbs.map((k) => k.rssKb)),
    },
  };
}

function calibrationLine(c: Calibration): string {
  return (
    `one login (ssh -o ControlMaster=no HOST true, ${LOGINS} in a row): ${c.loginCpuMs.toFixed(0)} ms of deployer CPU; ` +
    `one held master (${MASTERS} held at once, medians): PSS ${(c.master.pssKb / 1024).toFixed(2)} MB, ` +
    `private ${(c.master.privateKb / 1024).toFixed(2)} MB, RSS ${(c.master.rssKb / 1024).toFixed(2)} MB`
  );
}

function label(s: Scenario): string {
  return `${s.tool === "nixship" ? "nixship deploy" : "sequential loop"} ${s.from} -> ${s.to}`;
}

/** One `nix build` of the three systems; each names itself in nixos-version. */
async function buildSystems(): Promise<Record<System, string>> {
  const built = JSON.parse(
    await output("nix", [
      "build",
      "--no-link",
      "--json",
      ...SYSTEMS.map((s) => `path:${EXAMPLES}#${s}`),
    ]),
  ) as { outputs: { out: string } }[];
  const byName = new Map<string, string>();
  for (const { outputs } of built) {
    byName.set((await readFile(`${outputs.out}/nixos-version`, "utf8")).trim(), outputs.out);
  }
  const paths = {} as Record<System, string>;
  for (const name of SYSTEMS) {
    const path = byName.get(name);
    if (path === undefined) throw new Error(`nix build gave no system named ${name}`);
    paths[name] = path;
  }
  return paths;
}

/** Sets every host of the lab's fleet file to SYSTEM (a flake output of the examples). */
async function setFleetSystem(lab: BenchFleet, system: System): Promise<void> {
  const doc = JSON.parse(await readFile(lab.files.fleet, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const host of Object.values(doc.hosts)) host.system = `path:${EXAMPLES}#${system}`;
  await writeFile(lab.files.fleet, `${JSON.stringify(doc, null, 2)}\n`);
}

/** Node's own flags for the deploys (`--cpu-prof DIR`: a CPU profile of each). */
let deployNodeFlags: readonly string[] = [];

async function nixshipDeploy(
  lab: BenchFleet,
  scenario: Scenario,
  parallel: number,
  meter: CgroupMeter | undefined,
): Promise<Run> {
  await setFleetSystem(lab, scenario.to);
  const args = [
    ...deployNodeFlags,
    NIXSHIP,
    "deploy",
    "--fleet",
    lab.files.fleet,
    "--key",
    lab.files.cacheKey,
    "--serve-cache",
    `${lab.cacheAddress}:0`,
    "--parallel",
    String(parallel),
    "--canary",
    "1",
    "--json",
  ];
  const startedAt = Date.now();
  const r = await timed(process.execPath, args, ENV, commandTimeout(lab.hosts.length), meter);
  // Node's own warnings (a MaxListenersExceededWarning, say) are shown, not lost with stderr.
  for (const line of r.stderr
    .split("\n")
    .filter((l) => /Warning: /.test(l))
    .slice(0, 5)) {
    console.log(`      (deploy's stderr) ${line.trim()}`);
  }
  const events = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as DeployEvent & { time: string });
  // Hosts whose first activate ran no script (ssh exited 0 without an answer) and were
  // activated once more (host/activation-session.ts): named, since they cost a session more.
  const again = events.flatMap((e) =>
    e.type === "host-log" && e.line.endsWith("nothing began on the host: activating it once more")
      ? [e.host]
      : [],
  );
  if (again.length > 0) {
    console.log(`      activated once more (no script ran the first time): ${again.join(", ")}`);
  }
  const summary = events.find((e) => e.type === "summary");
  const plan = events.find((e) => e.type === "plan");
  const connections = plan?.type === "plan" ? plan.plan.connections : undefined;
  if (r.code !== 0 || summary?.type !== "summary" || !summary.ok) {
    // Why it stopped (a host unreachable in the survey stops it before the canary, say), then
    // the first hosts that did not activate.
    const stopped = events.flatMap((e) => (e.type === "stopped" ? [`stopped: ${e.reason}`] : []));
    const failed =
      summary?.type === "summary"
        ? summary.results
            .filter(
              (x) =>
                x.outcome.status !== "activated" &&
                !(x.outcome.status === "skipped" && x.outcome.reason === "not-started"),
            )
            .slice(0, 10)
            .map((x) => `${x.host}: ${JSON.stringify(x.outcome)}`)
        : [];
    const notStarted =
      summary?.type === "summary"
        ? summary.results.filter(
            (x) => x.outcome.status === "skipped" && x.outcome.reason === "not-started",
          ).length
        : 0;
    throw new Error(
      [
        `${label(scenario)} exited ${r.code}`,
        ...stopped,
        ...failed,
        `${notStarted} hosts not started`,
        tail(r.stderr),
      ].join("\n"),
    );
  }
  const activated = summary.results.filter((x) => x.outcome.status === "activated").length;
  if (activated !== lab.hosts.length) {
    throw new Error(`${label(scenario)}: ${activated} of ${lab.hosts.length} hosts activated`);
  }
  const copied = events.filter(
    (e) => e.type === "host-log" && /^copying path '.*' from '/.test(e.line),
  ).length;
  return {
    scenario,
    seconds: r.seconds,
    copied,
    serving: await serving(lab, scenario.to),
    phases: phases(events, startedAt, r.seconds),
    ...(connections === undefined ? {} : { plannedLogins: connections.logins }),
  };
}

/** Where a deploy's time went, from the timestamps of its events (ms resolution). */
function phases(
  events: readonly (DeployEvent & { time: string })[],
  startedAt: number,
  seconds: number,
): string {
  const at = (type: DeployEvent["type"]): number => {
    const e = events.find((x) => x.type === type);
    return e ? (Date.parse(e.time) - startedAt) / 1000 : Number.NaN;
  };
  const build = at("build-done");
  const push = at("push-done");
  const plan = at("plan");
  const waves = events.filter((e) => e.type === "wave-start").map((e) => Date.parse(e.time));
  const summary = at("summary");
  const canary = waves.length > 1 ? ((waves[1] ?? 0) - (waves[0] ?? 0)) / 1000 : Number.NaN;
  return (
    `start+evaluate+build ${secs(build)}, push ${secs(push - build)}, ` +
    `ask hosts ${secs(plan - push)}, canary ${secs(canary)}, rest ${secs(summary - plan - canary)}, ` +
    `exit ${secs(seconds - summary)} s\n      per host, median: ${hostPhases(events)}`
  );
}

/** The median time each host spent in each phase (from one phase event to the next). */
function hostPhases(events: readonly DeployEvent[]): string {
  const byHost = new Map<string, { phase: string; elapsed: number }[]>();
  for (const e of events) {
    if (e.type !== "host-phase") continue;
    byHost.set(e.host, [...(byHost.get(e.host) ?? []), { phase: e.phase, elapsed: e.elapsed }]);
  }
  const spent = new Map<string, number[]>();
  for (const seq of byHost.values()) {
    seq.forEach((p, i) => {
      const next = seq[i + 1];
      if (next) spent.set(p.phase, [...(spent.get(p.phase) ?? []), next.elapsed - p.elapsed]);
    });
    const total = seq.at(-1)?.elapsed;
    if (total !== undefined) spent.set("total", [...(spent.get("total") ?? []), total]);
  }
  return [...spent].map(([phase, xs]) => `${phase} ${secs(median(xs))}`).join(", ");
}

/** The sequential loop: copy the closure and switch, one host after the other. */
async function sequentialLoop(
  lab: BenchFleet,
  scenario: Scenario,
  path: string,
  meter: CgroupMeter | undefined,
): Promise<Run> {
  const script = [
    "set -e",
    'for h in "$@"; do',
    '  nix-copy-closure --to "root@$h" "$SYSTEM"',
    '  ssh -F "$SSH_CONFIG" "$h" "nix-env -p /nix/var/nix/profiles/system --set $SYSTEM && $SYSTEM/bin/switch-to-configuration switch"',
    "done",
  ].join("\n");
  const r = await timed(
    "sh",
    ["-c", script, "sh", ...lab.hosts.map((h) => h.name)],
    {
      ...ENV,
      NIX_SSHOPTS: `-F ${lab.files.sshConfig}`,
      SSH_CONFIG: lab.files.sshConfig,
      SYSTEM: path,
    },
    commandTimeout(lab.hosts.length),
    meter,
  );
  if (r.code !== 0) throw new Error(`${label(scenario)} exited ${r.code}:\n${tail(r.stderr)}`);
  const copied = r.stderr.split("\n").filter((l) => /^copying path '.*' to 'ssh:/.test(l)).length;
  return { scenario, seconds: r.seconds, copied, serving: await serving(lab, scenario.to) };
}

/**
 * Every host's GET /version names SYSTEM: 16 hosts at a time (1,000 requests at once from this
 * process on a loaded machine time out by the hundred), 5 s each, a host that gives no answer
 * asked once more.
 */
async function serving(lab: BenchFleet, system: System): Promise<Sample["serving"]> {
  const wrong: string[] = [];
  const ask = (h: BenchFleet["hosts"][number]) =>
    fetch(`http://${h.address}/version`, { signal: AbortSignal.timeout(5000) })
      .then(async (res) => ((await res.json()) as { name?: string }).name ?? "?")
      .catch(() => "(no answer)");
  await mapLimit(lab.hosts, 16, async (h) => {
    let name = await ask(h);
    if (name === "(no answer)") name = await ask(h);
    if (name !== system) wrong.push(`${h.name}=${name}`);
  });
  return wrong.length === 0
    ? { ok: true, detail: `OK (${lab.hosts.length}/${lab.hosts.length})` }
    : { ok: false, detail: `MISMATCH ${wrong.sort().join(" ")}` };
}

/**
 * Closes the shared SSH connections, both the lab ssh_config's (used by the loop) and
 * nixship's own (its ControlPath), so no scenario inherits a warm connection.
 */
async function closeSshConnections(lab: BenchFleet): Promise<void> {
  await mapLimit(
    lab.hosts.flatMap((h) => {
      const nixship = sshArgs({
        name: h.name,
        destination: h.name,
        user: undefined,
        configFile: lab.files.sshConfig,
        knownHosts: lab.files.knownHosts,
      });
      return [
        ["-F", lab.files.sshConfig, "-O", "exit", h.name],
        [...nixship.slice(0, -1), "-O", "exit", h.name],
      ];
    }),
    32,
    (args) => timed("ssh", args, ENV, 10),
  );
}

function report(samples: readonly Sample[], hosts: number, runs: number): string {
  const of = (id: string, tool: Tool) =>
    samples.filter((s) => s.scenario.id === id && s.scenario.tool === tool);
  const med = (xs: readonly Sample[]) => median(xs.map((s) => s.seconds));
  const rows: string[][] = [];
  for (const scenario of SCENARIOS.filter((x) => samples.some((s) => s.scenario === x))) {
    const mine = samples.filter((s) => s.scenario === scenario);
    const wall = med(mine);
    const other = scenario.tool === "nixship" ? "loop" : "nixship";
    const pair = scenario.id === "first" ? [] : of(scenario.id, other);
    const ratio =
      scenario.tool === "nixship" && pair.length ? `${(med(pair) / wall).toFixed(1)}x` : "";
    rows.push([
      `${label(scenario)} (${scenario.what})`,
      String(hosts),
      secs(wall),
      secs(wall / hosts),
      ratio,
      `${(median(mine.map((s) => s.cpuBusy)) * 100).toFixed(0)}%`,
      mine.every((s) => s.serving.ok) ? "OK" : "MISMATCH",
    ]);
  }
  const small = med(of("small", "nixship"));
  const ratio = med(of("small", "loop")) / small;
  const allOk = samples.every((s) => s.serving.ok);
  return [
    `Results${runs > 1 ? ` (medians of ${runs} runs, a fresh lab each)` : ""}:`,
    "",
    table([
      ["scenario", "hosts", "wall s", "per-host s", "loop/nixship", "CPU busy", "serves"],
      ...rows,
    ]),
    "",
    "wall s: from starting the command until it exited; per-host s = wall s / hosts.",
    "loop/nixship: the loop's wall time over nixship's for the same kind of change.",
    `CPU busy: the whole machine's (${availableParallelism()} CPUs, lab hosts and anything else running included).`,
    `serves: GET http://<host>/version on every host names the system deployed: ${allOk ? "OK" : "MISMATCH"}`,
    "",
    "Targets (printed, not asserted):",
    target(
      small < SMALL_CHANGE_TARGET_S,
      `small change with nixship under ${SMALL_CHANGE_TARGET_S} s for ${hosts} hosts`,
      `${secs(small)} s`,
    ),
    target(
      ratio >= RATIO_TARGET,
      `nixship at least ${RATIO_TARGET}x faster than the loop, small change`,
      `${ratio.toFixed(1)}x`,
    ),
  ].join("\n");
}

/** The small change at one size, run by run: the i-th nixship run against the i-th loop run. */
function runByRun(
  samples: readonly Sample[],
  hosts: number,
): { won: number; pairs: number; spread: { nixship: string; loop: string } } {
  const walls = (tool: Tool) =>
    samples
      .filter((s) => s.hosts === hosts && s.scenario.id === "small" && s.scenario.tool === tool)
      .map((s) => s.seconds);
  const mine = walls("nixship");
  const theirs = walls("loop");
  const pairs = Math.min(mine.length, theirs.length);
  let won = 0;
  for (let i = 0; i < pairs; i++) if ((mine[i] as number) < (theirs[i] as number)) won++;
  const range = (xs: readonly number[]) =>
    xs.length === 0
      ? "n/a"
      : `${secs(Math.min(...xs))}-${secs(Math.max(...xs))} s over ${xs.length} run${xs.length === 1 ? "" : "s"}`;
  return { won, pairs, spread: { nixship: range(mine), loop: range(theirs) } };
}

/** CPU per host against the loop's at the same size: the deployer's, the hosts', both. */
function cpuAgainstLoop(p: ScalePoint, l: ScalePoint): string[] {
  const lines: string[] = [];
  const d = p.deployerCpuMsPerHost;
  const ld = l.deployerCpuMsPerHost;
  const h = p.hostsCpuMsPerHost;
  const lh = l.hostsCpuMsPerHost;
  if (d !== undefined && ld !== undefined) {
    lines.push(
      target(
        d <= ld + CPU_OVER_LOOP_TARGET_MS,
        `deployer CPU per host <= the loop's + ${CPU_OVER_LOOP_TARGET_MS} ms, ${p.hosts} hosts`,
        `${d.toFixed(0)} ms against ${ld.toFixed(0)} + ${CPU_OVER_LOOP_TARGET_MS} ms`,
      ),
    );
  }
  if (h !== undefined && lh !== undefined) {
    lines.push(
      target(
        h <= HOSTS_CPU_RATIO_TARGET * lh,
        `hosts' CPU per host <= ${HOSTS_CPU_RATIO_TARGET}x the loop's, ${p.hosts} hosts`,
        `${h.toFixed(0)} ms against ${lh.toFixed(0)} ms (${(h / lh).toFixed(2)}x)`,
      ),
    );
  }
  if (d !== undefined && ld !== undefined && h !== undefined && lh !== undefined) {
    lines.push(
      target(
        d + h <= TOTAL_CPU_RATIO_TARGET * (ld + lh),
        `deployer and hosts' CPU per host <= ${TOTAL_CPU_RATIO_TARGET}x the loop's, ${p.hosts} hosts`,
        `${(d + h).toFixed(0)} ms against ${(ld + lh).toFixed(0)} ms (${((d + h) / (ld + lh)).toFixed(2)}x)`,
      ),
    );
  }
  return lines;
}

/** The small change at each lab size, medians over runs: what the scale curve plots. */
function scalePoints(
  samples: readonly Sample[],
  hostCounts: readonly number[],
  calibrations: readonly Calibration[],
): ScalePoint[] {
  return hostCounts.flatMap((hosts) =>
    (["nixship", "loop"] as const).flatMap((tool) => {
      const xs = samples.filter(
        (s) => s.hosts === hosts && s.scenario.id === "small" && s.scenario.tool === tool,
      );
      if (xs.length === 0) return [];
      const of = (f: (s: Sample) => number | undefined) => {
        const values = xs.map(f).filter((v): v is number => v !== undefined);
        return values.length > 0 ? median(values) : undefined;
      };
      const logins = calibrations.filter((c) => c.hosts === hosts).map((c) => c.loginCpuMs);
      return [
        {
          tool,
          hosts,
          wallSeconds: median(xs.map((s) => s.seconds)),
          deployerCpuMsPerHost: of((s) =>
            s.deployer === undefined ? undefined : (s.deployer.cpuSeconds * 1000) / hosts,
          ),
          deployerRssMb: of((s) =>
            s.deployer === undefined ? undefined : s.deployer.rss.sumBytes / 2 ** 20,
          ),
          deployerPssMb: of((s) =>
            s.deployer === undefined ? undefined : s.deployer.rss.pssBytes / 2 ** 20,
          ),
          hostsCpuMsPerHost: of((s) =>
            s.hostsCpuSeconds === undefined ? undefined : (s.hostsCpuSeconds * 1000) / hosts,
          ),
          handshakesPerHost: median(xs.map((s) => s.handshakes.mean)),
          loginCpuMs: logins.length > 0 ? median(logins) : undefined,
        },
      ];
    }),
  );
}

/** How the deployer's cost grows with the fleet, for the small change, and the targets. */
function scaleReport(
  samples: readonly Sample[],
  hostCounts: readonly number[],
  calibrations: readonly Calibration[],
): string {
  const points = scalePoints(samples, hostCounts, calibrations);
  const cell = (v: number | undefined, digits = 0) => (v === undefined ? "n/a" : v.toFixed(digits));
  const rows = points.map((p) => [
    p.tool === "nixship" ? "nixship deploy" : "sequential loop",
    String(p.hosts),
    secs(p.wallSeconds),
    cell(p.deployerCpuMsPerHost),
    cell(p.loginCpuMs),
    cell(p.deployerRssMb, 1),
    cell(p.deployerPssMb, 1),
    cell(p.hostsCpuMsPerHost),
    p.handshakesPerHost.toFixed(2),
  ]);
  const nixship = points.filter((p) => p.tool === "nixship");
  const loop = points.filter((p) => p.tool === "loop");
  const bound = DEFAULT_MAX_CONNECTIONS;
  const largest = nixship.at(-1);
  const lines = [
    "Scale (the small change, v1 -> v2 for nixship, v2 -> v3 for the loop):",
    "",
    table([
      [
        "tool",
        "hosts",
        "wall s",
        "deployer CPU ms/host",
        "one login ms",
        "deployer peak RSS MB",
        "deployer peak PSS MB",
        "hosts CPU ms/host",
        "handshakes/host",
      ],
      ...rows,
    ]),
    "",
    "deployer: the command and every process it started (ssh clients and masters included);",
    "hosts: every process in the lab hosts' namespaces. one login: the deployer-side CPU of one",
    "`ssh -o ControlMaster=no HOST true` at that size. Peak RSS: the largest sum of the",
    "deployer's resident sets in a 100 ms sample (shared pages counted per process); PSS: the",
    "same with each shared page counted once in all (what the deployer really holds).",
    `nixship held at most ${bound} ssh masters (--max-connections' default).`,
  ];
  const masters = calibrations.map((c) => c.master);
  if (masters.length > 0) {
    const pss = median(masters.map((m) => m.pssKb)) / 1024;
    const priv = median(masters.map((m) => m.privateKb)) / 1024;
    lines.push(
      `One held ssh master (median over ${masters.length} sizes): PSS ${pss.toFixed(2)} MB, private ${priv.toFixed(2)} MB;` +
        ` ${bound} held: ${(bound * pss).toFixed(0)} MB of PSS (${(bound * priv).toFixed(0)} MB private).`,
    );
  }
  const rssSlope = slopeOverHosts(nixship, (p) => p.deployerRssMb);
  const pssSlope = slopeOverHosts(nixship, (p) => p.deployerPssMb);
  const beyond = nixship.filter((p) => p.hosts > bound);
  const rssBeyond = slopeOverHosts(beyond, (p) => p.deployerRssMb);
  const pssBeyond = slopeOverHosts(beyond, (p) => p.deployerPssMb);
  lines.push(
    "",
    `Deployer peak RSS by size: ${nixship.map((p) => `${p.hosts}: ${cell(p.deployerRssMb, 0)} MB`).join(", ")}` +
      `; slope over all sizes ${cell(rssSlope, 3)} MB/host (PSS ${cell(pssSlope, 3)}),` +
      ` over the sizes past the bound (${beyond.map((p) => p.hosts).join(", ") || "none"}) ${cell(rssBeyond, 3)} MB/host (PSS ${cell(pssBeyond, 3)}).`,
    "",
    "Targets (printed, not asserted):",
  );
  for (const p of nixship) {
    const l = loop.find((x) => x.hosts === p.hosts);
    if (l !== undefined) {
      lines.push(
        target(
          p.wallSeconds < l.wallSeconds,
          `faster than the sequential loop, ${p.hosts} hosts (medians)`,
          `${secs(p.wallSeconds)} s against ${secs(l.wallSeconds)} s (${(l.wallSeconds / p.wallSeconds).toFixed(1)}x)`,
        ),
      );
      const { won, pairs, spread } = runByRun(samples, p.hosts);
      lines.push(
        target(
          pairs > 0 && won === pairs,
          `faster than the sequential loop in every run, ${p.hosts} hosts`,
          `${won} of ${pairs}; nixship ${spread.nixship}, the loop ${spread.loop}`,
        ),
      );
      lines.push(...cpuAgainstLoop(p, l));
    }
  }
  for (const p of nixship) {
    if (p.deployerCpuMsPerHost === undefined || p.loginCpuMs === undefined) continue;
    const limit = p.loginCpuMs + CPU_OVER_LOGIN_TARGET_MS;
    lines.push(
      target(
        p.deployerCpuMsPerHost <= limit,
        `deployer CPU per host <= one login + ${CPU_OVER_LOGIN_TARGET_MS} ms, ${p.hosts} hosts`,
        `${p.deployerCpuMsPerHost.toFixed(0)} ms against ${p.loginCpuMs.toFixed(0)} + ${CPU_OVER_LOGIN_TARGET_MS} = ${limit.toFixed(0)} ms`,
      ),
    );
  }
  if (largest?.deployerRssMb !== undefined && largest.deployerPssMb !== undefined) {
    // The summed RSS counts each ssh process's shared pages (libcrypto, libc) once per process;
    // the PSS counts them once in all: the memory the deployer really takes from the machine.
    lines.push(
      target(
        largest.deployerPssMb <= RSS_AT_1000_TARGET_MB,
        `deployer peak memory (PSS) <= ${RSS_AT_1000_TARGET_MB} MB at 1,000 hosts (here ${largest.hosts})`,
        `${largest.deployerPssMb.toFixed(0)} MB`,
      ),
      target(
        largest.deployerRssMb <= RSS_AT_1000_TARGET_MB,
        `the same, as summed RSS (shared pages counted per process)`,
        `${largest.deployerRssMb.toFixed(0)} MB`,
      ),
    );
  }
  if (rssBeyond !== undefined) {
    lines.push(
      target(
        rssBeyond <= RSS_BEYOND_BOUND_TARGET_MB,
        `no RSS growth past the bound (${bound}): slope <= ${RSS_BEYOND_BOUND_TARGET_MB} MB/host`,
        `${rssBeyond.toFixed(3)} MB/host (PSS ${cell(pssBeyond, 3)})`,
      ),
    );
  } else if (rssSlope !== undefined) {
    lines.push(
      target(
        rssSlope <= RSS_PER_HOST_TARGET_MB,
        `deployer RSS growth per host <= ${RSS_PER_HOST_TARGET_MB} MB (fewer than 2 sizes past the bound)`,
        `${rssSlope.toFixed(2)} MB (PSS ${cell(pssSlope, 2)} MB)`,
      ),
    );
  }
  for (const p of nixship) {
    const s = samples.find(
      (x) => x.hosts === p.hosts && x.scenario.id === "small" && x.scenario.tool === "nixship",
    );
    const planned = s?.plannedLogins === undefined ? undefined : s.plannedLogins / p.hosts;
    lines.push(
      planned === undefined
        ? target(
            p.handshakesPerHost <= HANDSHAKES_PER_HOST_TARGET,
            `SSH handshakes per host <= ${HANDSHAKES_PER_HOST_TARGET} (within the bound), ${p.hosts} hosts`,
            p.handshakesPerHost.toFixed(2),
          )
        : target(
            p.handshakesPerHost <= planned + 0.005,
            `SSH handshakes per host <= the plan's, past the bound, ${p.hosts} hosts`,
            `${p.handshakesPerHost.toFixed(2)} against ${planned.toFixed(2)} planned`,
          ),
    );
  }
  const at200 = nixship.find((p) => p.hosts === MAX_LAB_HOSTS);
  if (at200 !== undefined) {
    lines.push(
      target(
        at200.wallSeconds < LARGEST_LAB_TARGET_S,
        `${MAX_LAB_HOSTS} lab hosts, small change, under ${LARGEST_LAB_TARGET_S} s`,
        `${secs(at200.wallSeconds)} s`,
      ),
    );
  }
  return lines.join("\n");
}

/** The least-squares slope of a figure over the hosts (MB, or ms, per host). */
function slopeOverHosts(
  points: readonly ScalePoint[],
  mbOf: (p: ScalePoint) => number | undefined,
): number | undefined {
  const xy = points.flatMap((p) => {
    const y = mbOf(p);
    return y === undefined ? [] : [{ x: p.hosts, y }];
  });
  if (new Set(xy.map((p) => p.x)).size < 2) return undefined;
  return linearFit(xy).slope;
}

function target(ok: boolean, what: string, got: string): string {
  return `  ${ok ? "PASS" : "MISS"}  ${what.padEnd(62)} ${got}`;
}

async function output(command: string, args: readonly string[]): Promise<string> {
  const r = await timed(command, args, ENV, COMMAND_TIMEOUT_S);
  if (r.code !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${r.code}:\n${tail(r.stderr)}`);
  return r.stdout;
}

function secs(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : "n/a";
}

function cpuBusySince(before: { busy: number; total: number }): number {
  const now = cpuTimes();
  return (now.busy - before.busy) / Math.max(1, now.total - before.total);
}

function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

await main();
