// The fleet benchmark (`npm run bench:fleet`): `nixship deploy` to a lab of 20 real hosts
// (network namespaces, own /nix, real sshd), against the seeds' approach, a sequential loop of
// `nix-copy-closure` + `ssh ... switch-to-configuration` per host, on the same hosts in the
// same run. Prints wall times, ratios and whether the targets are met; asserts nothing.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { sshArgs } from "../src/delivery/ssh-transport.js";
import type { DeployEvent } from "../src/deploy/events.js";
import { TEST_NIX_CONFIG } from "../test/support/nix-config.js";
import { median, table } from "./stats.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));
const SYSTEMS = ["web-v1", "web-v2", "web-v3"] as const;
type System = (typeof SYSTEMS)[number];
const LAB = "fbench";
// Every command is bounded; a deploy or loop of 20 hosts takes seconds.
const COMMAND_TIMEOUT_S = 240;
const SMALL_CHANGE_TARGET_S = 10;
const RATIO_TARGET = 5;
// Never a substituter: nothing here may leave the machine.
const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };

interface Lab {
  readonly number: number;
  readonly dir: string;
  readonly hosts: readonly { readonly name: string; readonly address: string }[];
  readonly files: {
    readonly sshConfig: string;
    readonly knownHosts: string;
    readonly fleet: string;
    readonly cacheKey: string;
  };
}

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
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      hosts: { type: "string", default: "20" },
      runs: { type: "string", default: "1" },
    },
  });
  const hostCount = Math.min(100, Math.max(2, Number(values.hosts) || 20));
  const runs = Math.min(5, Math.max(1, Number(values.runs) || 1));
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-fleet-"));
  const labEnv: NodeJS.ProcessEnv = { ...ENV, NIXSHIP_LAB_DIR: join(work, "labs") };
  const labDownSync = (): void => {
    spawnSync(process.execPath, [NIXSHIP, "lab", "down", "--name", LAB], {
      env: labEnv,
      stdio: "ignore",
      timeout: 60_000,
    });
    rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    labDownSync();
    process.exit(130);
  });

  const samples: Sample[] = [];
  try {
    console.log(
      `node ${process.version}, ${(await output("nix", ["--version"])).trim()}, ` +
        `${availableParallelism()} CPUs, ${loadAverage()}`,
    );
    console.log(`\nBuilding the example systems ${SYSTEMS.join(", ")}...`);
    const paths = await buildSystems();
    for (const name of SYSTEMS) console.log(`  ${name}  ${paths[name]}`);
    printDesign(hostCount, runs);
    for (let r = 0; r < runs; r++) {
      console.log(`\nRun ${r + 1}/${runs}: lab of ${hostCount} hosts`);
      const started = performance.now();
      const lab = await labUp(hostCount, labEnv);
      console.log(
        `  lab up in ${secs((performance.now() - started) / 1000)} s: ${lab.hosts[0]?.name}..` +
          `${lab.hosts.at(-1)?.name}, 10.231.${lab.number}.0/24, ${lab.dir}`,
      );
      try {
        for (const scenario of SCENARIOS) {
          await closeSshConnections(lab);
          const cpu = cpuTimes();
          const run =
            scenario.tool === "nixship"
              ? await nixshipDeploy(lab, scenario)
              : await seedsLoop(lab, scenario, paths[scenario.to]);
          const sample: Sample = { ...run, cpuBusy: cpuBusySince(cpu) };
          samples.push(sample);
          console.log(
            `  ${label(scenario).padEnd(44)} ${secs(sample.seconds).padStart(6)} s  ` +
              `${sample.copied} paths copied  CPU ${(sample.cpuBusy * 100).toFixed(0)}% busy  ` +
              `serves ${scenario.to}: ${sample.serving.detail}` +
              (sample.phases ? `\n      ${sample.phases}` : ""),
          );
        }
      } finally {
        await closeSshConnections(lab);
        await labDown(labEnv);
      }
    }
  } finally {
    labDownSync();
  }
  console.log(`  (${loadAverage()})`);
  console.log(`\n${report(samples, hostCount, runs)}`);
}

function printDesign(hosts: number, runs: number): void {
  console.log(
    [
      "",
      `Design: on one lab of ${hosts} hosts${runs > 1 ? " (a fresh lab per run)" : ""}, in this order:`,
      ...SCENARIOS.map((s, i) => `  ${i + 1}. ${label(s)}: ${s.what}`),
      "A small change moves every host to a system it never had: two new store paths per host",
      "(the toplevel and its etc/, a few kB; the service code they share is already there). Both",
      "tools get one such change of the same size, v1->v2 for nixship and v2->v3 for the loop.",
      "Then both switch to a system the hosts already hold (nothing to copy), the loop first.",
      "Every scenario starts with no SSH connection open (ssh -O exit on every host before).",
      "",
      "nixship: `nixship deploy --fleet <lab>/nixship.json --key <lab>/cache.sec",
      "  --serve-cache 10.231.L.1:0 --parallel 20 --canary 1 --json`, default confirm window; its",
      "  time includes evaluating the flake, the (no-op) build, signing and pushing to the cache,",
      "  asking every host what it runs, the canary, health checks and confirmations.",
      "loop (the seeds' approach), one host after the other, hosts by their ssh_config names:",
      "  NIX_SSHOPTS='-F <lab>/ssh_config' nix-copy-closure --to root@HOST PATH",
      '  ssh -F <lab>/ssh_config HOST "nix-env -p /nix/var/nix/profiles/system --set PATH &&',
      '    PATH/bin/switch-to-configuration switch"',
      "  It is handed the store path already built (a real script would evaluate first), does no",
      "  health check and no rollback. Signatures: the hosts' nix.conf has require-sigs = true and",
      "  trusts no key, yet nothing needs signing: nix-copy-closure imports through",
      "  `nix-store --serve --write`, run as root on the host against its own store, which Nix",
      "  treats as trusted and does not check signatures for. That is what the seeds relied on;",
      "  the loop is run exactly as written, with nothing signed and no option changed.",
    ].join("\n"),
  );
}

function label(s: Scenario): string {
  return `${s.tool === "nixship" ? "nixship deploy" : "seeds' loop"} ${s.from} -> ${s.to}`;
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

async function labUp(hosts: number, env: NodeJS.ProcessEnv): Promise<Lab> {
  const r = await timed(
    process.execPath,
    [NIXSHIP, "lab", "up", String(hosts), "--name", LAB, "--json"],
    env,
  );
  if (r.code !== 0) throw new Error(`lab up exited ${r.code}:\n${tail(r.stderr)}`);
  return JSON.parse(r.stdout) as Lab;
}

async function labDown(env: NodeJS.ProcessEnv): Promise<void> {
  const r = await timed(process.execPath, [NIXSHIP, "lab", "down", "--name", LAB], env);
  if (r.code !== 0) console.error(`lab down exited ${r.code}:\n${tail(r.stderr)}`);
}

/** Sets every host of the lab's fleet file to SYSTEM (a flake output of the examples). */
async function setFleetSystem(lab: Lab, system: System): Promise<void> {
  const doc = JSON.parse(await readFile(lab.files.fleet, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const host of Object.values(doc.hosts)) host.system = `path:${EXAMPLES}#${system}`;
  await writeFile(lab.files.fleet, `${JSON.stringify(doc, null, 2)}\n`);
}

async function nixshipDeploy(lab: Lab, scenario: Scenario): Promise<Omit<Sample, "cpuBusy">> {
  await setFleetSystem(lab, scenario.to);
  const args = [
    NIXSHIP,
    "deploy",
    "--fleet",
    lab.files.fleet,
    "--key",
    lab.files.cacheKey,
    "--serve-cache",
    `10.231.${lab.number}.1:0`,
    "--parallel",
    "20",
    "--canary",
    "1",
    "--json",
  ];
  const startedAt = Date.now();
  const r = await timed(process.execPath, args, ENV);
  const events = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as DeployEvent & { time: string });
  const summary = events.find((e) => e.type === "summary");
  if (r.code !== 0 || summary?.type !== "summary" || !summary.ok) {
    const failed =
      summary?.type === "summary"
        ? summary.results
            .filter((x) => x.outcome.status !== "activated")
            .map((x) => `${x.host}: ${JSON.stringify(x.outcome)}`)
            .join("\n")
        : "";
    throw new Error(`${label(scenario)} exited ${r.code}\n${failed}\n${tail(r.stderr)}`);
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

/** The seeds' approach: copy the closure and switch, one host after the other. */
async function seedsLoop(
  lab: Lab,
  scenario: Scenario,
  path: string,
): Promise<Omit<Sample, "cpuBusy">> {
  const script = [
    "set -e",
    'for h in "$@"; do',
    '  nix-copy-closure --to "root@$h" "$SYSTEM"',
    '  ssh -F "$SSH_CONFIG" "$h" "nix-env -p /nix/var/nix/profiles/system --set $SYSTEM && $SYSTEM/bin/switch-to-configuration switch"',
    "done",
  ].join("\n");
  const r = await timed("sh", ["-c", script, "sh", ...lab.hosts.map((h) => h.name)], {
    ...ENV,
    NIX_SSHOPTS: `-F ${lab.files.sshConfig}`,
    SSH_CONFIG: lab.files.sshConfig,
    SYSTEM: path,
  });
  if (r.code !== 0) throw new Error(`${label(scenario)} exited ${r.code}:\n${tail(r.stderr)}`);
  const copied = r.stderr.split("\n").filter((l) => /^copying path '.*' to 'ssh:/.test(l)).length;
  return { scenario, seconds: r.seconds, copied, serving: await serving(lab, scenario.to) };
}

/** Every host's GET /version names SYSTEM (one request per host, 5 s each at most). */
async function serving(lab: Lab, system: System): Promise<Sample["serving"]> {
  const wrong: string[] = [];
  await Promise.all(
    lab.hosts.map(async (h) => {
      const name = await fetch(`http://${h.address}/version`, { signal: AbortSignal.timeout(5000) })
        .then(async (res) => ((await res.json()) as { name?: string }).name ?? "?")
        .catch(() => "(no answer)");
      if (name !== system) wrong.push(`${h.name}=${name}`);
    }),
  );
  return wrong.length === 0
    ? { ok: true, detail: `OK (${lab.hosts.length}/${lab.hosts.length})` }
    : { ok: false, detail: `MISMATCH ${wrong.sort().join(" ")}` };
}

/**
 * Closes the shared SSH connections, both the lab ssh_config's (used by the loop) and
 * nixship's own (its ControlPath), so no scenario inherits a warm connection.
 */
async function closeSshConnections(lab: Lab): Promise<void> {
  await Promise.all(
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
      ].map((args) => timed("ssh", args, ENV, 10));
    }),
  );
}

function report(samples: readonly Sample[], hosts: number, runs: number): string {
  const of = (id: string, tool: Tool) =>
    samples.filter((s) => s.scenario.id === id && s.scenario.tool === tool);
  const med = (xs: readonly Sample[]) => median(xs.map((s) => s.seconds));
  const rows: string[][] = [];
  for (const scenario of SCENARIOS) {
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

function target(ok: boolean, what: string, got: string): string {
  return `  ${ok ? "PASS" : "MISS"}  ${what.padEnd(62)} ${got}`;
}

interface Timed {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

/** Runs a command to its end, killed after `timeoutS`; wall time includes process start-up. */
function timed(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutS = COMMAND_TIMEOUT_S,
): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(command, args, {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutS * 1000,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.on("data", (d: Buffer) => err.push(d));
    proc.on("error", reject);
    proc.on("close", (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8") + (signal ? `\n(killed by ${signal})` : ""),
        seconds: (performance.now() - started) / 1000,
      }),
    );
  });
}

async function output(command: string, args: readonly string[]): Promise<string> {
  const r = await timed(command, args, ENV);
  if (r.code !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${r.code}:\n${tail(r.stderr)}`);
  return r.stdout;
}

function tail(text: string): string {
  return text.trim().split("\n").slice(-20).join("\n");
}

function secs(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : "n/a";
}

/** Busy and total jiffies of all CPUs, from /proc/stat. */
function cpuTimes(): { busy: number; total: number } {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  // idle and iowait
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
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
