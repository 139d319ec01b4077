// Activations that end, on a lab of three hosts, through the whole tool: a switch that never
// ends (the example system web-hang) is bounded by the activation timeout in ssh deploys and
// through the agent; a deployer or an agent killed mid-activation, and a lock left behind,
// never leave a host locked or booting an unverified system. After every failure the host
// serves its previous system and its boot profile points at its previous generation.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SshDelivery } from "../src/delivery/ssh.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { parseStorePath } from "../src/nix/store-path.js";
import { type CliRun, NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";
import { deployEvents, labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";

const LAB = "rc";
let work: string;
let lab: { number: number; dir: string; hosts: { name: string; address: string }[] };
let fleetFile: string;
let keyFile: string;
let systems: Record<ExampleSystem, string>;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });

type FleetDoc = {
  hosts: Record<string, { system: string; delivery?: string; sshHost?: string }>;
  [k: string]: unknown;
};

async function setSystem(host: string, system: ExampleSystem, file = fleetFile): Promise<void> {
  await setExampleSystems(file, { [host]: system });
}

function deployArgs(host: string, ...extra: string[]): string[] {
  return labDeployArgs(lab, fleetFile, keyFile, "--on", host, ...extra);
}

function served(host: string): Promise<string> {
  return servedBy(lab, host);
}

interface LiveRow {
  host: string;
  reachable: boolean;
  current?: string;
  profile?: string;
  generation?: number;
  activation?: { command: string; path: string | null; pid: number | null; stale: boolean } | null;
}

/** What the host runs and boots next, asked live over ssh. */
async function live(host: string): Promise<LiveRow> {
  const r = await nixship(["status", "--fleet", fleetFile, "--on", host, "--json"]);
  const row = (JSON.parse(r.stdout) as { hosts: LiveRow[] }).hosts[0];
  if (row === undefined) throw new Error(`no status row for ${host}: ${r.stderr}`);
  return row;
}

/** Waits (bounded) until the host's lock is free and it serves `name`. */
async function settled(host: string, name: string, seconds: number): Promise<LiveRow> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const row = await live(host);
    if (!row.activation && (await served(host)) === name) return row;
    if (Date.now() > deadline) {
      throw new Error(`${host} did not settle on ${name}: ${JSON.stringify(row)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/**
 * The host is on `system`: serving it, running it, and booting it next from `generation` (a
 * failed activation leaves its generation behind, but the profile points back).
 */
async function expectOn(host: string, system: ExampleSystem, generation?: number): Promise<number> {
  expect(await served(host)).toBe(system);
  const row = await live(host);
  expect(row).toMatchObject({
    reachable: true,
    current: systems[system],
    profile: systems[system],
  });
  if (generation !== undefined) expect(row.generation).toBe(generation);
  expect(row.activation ?? null).toBeNull();
  return row.generation as number;
}

/** The generation web-v2 got on rc1, which the later failures must come back to. */
let v2Generation = 0;

const events = deployEvents;

function outcomeOf(r: CliRun, host: string) {
  const summary = events(r).find((e) => e.type === "summary") as
    | { results: { host: string; outcome: Record<string, unknown> }[] }
    | undefined;
  if (!summary) throw new Error(`no summary; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  return summary.results.find((x) => x.host === host)?.outcome;
}

/** Starts `nixship deploy --json`, resolving once an event matches; the child keeps running. */
function startDeploy(
  args: readonly string[],
  until: (event: { type: string; [k: string]: unknown }) => boolean,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NIXSHIP_BIN, ...args, "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buffer = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`deploy never reached the awaited event; output:\n${buffer}`));
    }, 120_000);
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      buffer += d;
      const lines = buffer.split("\n");
      for (const line of lines.slice(0, -1)) {
        if (line.trim() && until(JSON.parse(line) as { type: string })) {
          clearTimeout(timer);
          resolve(child);
          return;
        }
      }
    });
    child.on("exit", () => {
      clearTimeout(timer);
      reject(new Error(`deploy ended before the awaited event; output:\n${buffer}`));
    });
  });
}

const switching = (host: string) => (e: { type: string; [k: string]: unknown }) =>
  e.type === "host-phase" && e.host === host && e.phase === "switch";

beforeAll(async () => {
  // Not under /tmp: each lab host has a private /tmp, and the agent must see its files.
  await mkdir("/var/tmp", { recursive: true });
  work = await mkdtemp("/var/tmp/nixship-recovery-test-");
  systems = await buildExampleSystems();
  const repoInHost = join(work, "repo");
  await mkdir(repoInHost);
  const bound = await run("mount", ["--bind", REPO, repoInHost]);
  expect(bound.code, bound.stderr).toBe(0);
  binInHost = join(repoInHost, relative(REPO, NIXSHIP_BIN));
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  fleetFile = join(lab.dir, "nixship.json");
  keyFile = join(lab.dir, "cache.sec");
  // Every host starts on web-v1 (generation 1).
  const first = await nixship(deployArgs(`@${LAB}`));
  expect(first.code, first.stderr).toBe(0);
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  if (binInHost) await run("umount", [join(work, "repo")]);
  await rm(work, { recursive: true, force: true });
});

describe("a switch that never ends, deployed over ssh", () => {
  it("ends within the activation timeout, names the host and the timeout, and puts the host back", async () => {
    await setSystem("rc1", "web-hang");
    const started = performance.now();
    const r = await nixship(deployArgs("rc1", "--activation-timeout", "5", "--json"));
    const seconds = (performance.now() - started) / 1000;
    expect(r.code, r.stderr).toBe(1);
    // Bounded: the timeout, the rollback switch, and the deployer's own work (build, push,
    // plan); nowhere near the minutes a hung switch took before.
    expect(seconds).toBeLessThan(5 + 60);
    expect(outcomeOf(r, "rc1")).toEqual({
      status: "failed",
      phase: "switch",
      message: "switch-to-configuration ran past the activation timeout of 5s; stopped it",
      rolledBack: true,
      timedOutOnHost: true,
    });
    await expectOn("rc1", "web-v1", 1);
    // The human summary names the host and the timeout too.
    const human = await nixship(deployArgs("rc1", "--activation-timeout", "3"));
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(/rc1\s+FAILED \(rolled back\)\s+example-web-system-v1\s+switch/);
    expect(human.stderr).toContain(
      "rc1: FAILED in switch: switch-to-configuration ran past the activation timeout of 3s",
    );
    await expectOn("rc1", "web-v1", 1);
  });

  it("the next deploy of a good system works", async () => {
    await setSystem("rc1", "web-v2");
    const r = await nixship(deployArgs("rc1"));
    expect(r.code, r.stderr).toBe(0);
    v2Generation = await expectOn("rc1", "web-v2");
    expect(v2Generation).toBeGreaterThan(1);
  });
});

describe("a deployer killed mid-activation", () => {
  it("during the switch: the host ends the activation by its timeout and goes back", async () => {
    await setSystem("rc1", "web-hang");
    const child = await startDeploy(
      deployArgs("rc1", "--activation-timeout", "8"),
      switching("rc1"),
    );
    child.kill("SIGKILL");
    const row = await settled("rc1", "web-v2", 60);
    expect(row).toMatchObject({ current: systems["web-v2"], profile: systems["web-v2"] });
    expect(row.generation).toBe(v2Generation);
  });

  it("during the health checks: the confirmation window rolls the host back", async () => {
    await setSystem("rc1", "web-broken");
    // web-broken's /health answers 500: the HTTP check retries for its 6 s timeout, and the
    // deployer is killed meanwhile; nobody confirms, so the window (6 + 10 s) rolls back.
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc & {
      policy?: Record<string, unknown>;
    };
    const withCheck = join(work, "with-check.json");
    await writeFile(
      withCheck,
      JSON.stringify({
        ...doc,
        policy: {
          ...(doc.policy ?? {}),
          confirmTimeout: 1,
          health: { http: [{ url: "http://{address}/health", timeout: 6 }] },
        },
      }),
    );
    const args = deployArgs("rc1").map((a) => (a === fleetFile ? withCheck : a));
    const child = await startDeploy(
      args,
      (e) => e.type === "host-phase" && e.host === "rc1" && e.phase === "health",
    );
    expect(await served("rc1")).toBe("web-broken");
    child.kill("SIGKILL");
    const row = await settled("rc1", "web-v2", 60);
    expect(row).toMatchObject({ current: systems["web-v2"], profile: systems["web-v2"] });
    expect(row.generation).toBe(v2Generation);
  });
});

/** Runs a shell command on a lab host over ssh. */
function onHost(host: string, command: string): Promise<CliRun> {
  return run("ssh", ["-F", join(lab.dir, "ssh_config"), host, command]);
}

/** The host-log lines a `deploy --json` printed for a host. */
/** Live (not zombie) processes on the machine in process group `group`, or with pid `pid`. */
async function running(host: string, which: { group?: string; pid?: string }): Promise<string[]> {
  const ps = await onHost(host, "ps -e -o pid= -o pgid= -o stat= -o args=");
  return ps.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([pid, pgid, stat]) => {
      if (stat === undefined || stat.startsWith("Z")) return false;
      return which.group !== undefined ? pgid === which.group : pid === which.pid;
    })
    .map((fields) => fields.join(" "));
}

function hostLog(r: CliRun, host: string): string[] {
  return events(r)
    .filter((e) => e.type === "host-log" && e.host === host)
    .map((e) => String(e.line));
}

describe("a lock left behind", () => {
  const host = "rc2";

  it("by an activation SIGKILLed mid-switch: the next deploy stops it, goes back, takes over, and says so", async () => {
    const before = await expectOn(host, "web-v1");
    await setSystem(host, "web-hang");
    const child = await startDeploy(
      deployArgs(host, "--activation-timeout", "300"),
      switching(host),
    );
    child.kill("SIGKILL");
    // The deployer is gone; the host's activate.sh still waits on the hung switch. Kill it too,
    // as an out-of-memory killer or a reboot of the service manager would.
    const deadline = Date.now() + 30_000;
    let held = await live(host);
    while (held.current !== systems["web-hang"] || !held.activation?.pid) {
      if (Date.now() > deadline) throw new Error(`never switching: ${JSON.stringify(held)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
      held = await live(host);
    }
    const info = (await onHost(host, "cat /run/nixship/lock/info")).stdout;
    const group = /^group=(\d+)$/m.exec(info)?.[1];
    expect(group, info).toBeDefined();
    expect((await onHost(host, `kill -s KILL ${held.activation.pid}`)).code).toBe(0);
    expect((await live(host)).activation).toMatchObject({ stale: true });
    expect((await live(host)).profile).toBe(systems["web-hang"]);

    await setSystem(host, "web-v2");
    const r = await nixship(deployArgs(host, "--json"));
    expect(r.code, r.stderr).toBe(0);
    expect(hostLog(r, host).join("\n")).toMatch(/taking over a stale lock.*its holder is gone/);
    // The hung switch's process group is gone, and the host runs what was deployed.
    expect(await running(host, { group: group as string })).toEqual([]);
    const gen = await expectOn(host, "web-v2");
    expect(gen).toBeGreaterThan(before);
  });

  it("past its deadline, its holder still alive: the next deploy takes over, and says so", async () => {
    const before = await expectOn(host, "web-v2");
    // A holder that lives on (a wedged process) with a deadline an hour ago.
    const holder = await onHost(host, "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!");
    const pid = holder.stdout.trim();
    const since = Math.floor(Date.now() / 1000) - 7200;
    await onHost(
      host,
      [
        "mkdir -p /run/nixship/lock",
        `printf 'pid=${pid}\\nkind=activate\\ncommand=activate /nix/store/wedged\\nsince=${since}\\ndeadline=${since + 3600}\\n' > /run/nixship/lock/info`,
      ].join(" && "),
    );
    const locked = await live(host);
    expect(locked.activation).toMatchObject({ command: "activate /nix/store/wedged", stale: true });

    await setSystem(host, "web-v1");
    const r = await nixship(deployArgs(host, "--json"));
    expect(r.code, r.stderr).toBe(0);
    expect(hostLog(r, host).join("\n")).toMatch(/taking over a stale lock.*past its deadline/);
    expect(await running(host, { pid })).toEqual([]);
    expect(await expectOn(host, "web-v1")).toBeGreaterThan(before);
  });
});

/** The checkout (dist/, node_modules/) the agent runs from, bind-mounted where hosts see it. */
const REPO = join(dirname(NIXSHIP_BIN), "..", "..");
let binInHost = "";

describe("a switch that never ends, through the agent", () => {
  const host = "rc3";
  let agentFleet: string;
  let releaseKeyFile: string;
  let configFile: string;

  /** `nixship agent --once` inside the host, as its service would run it. */
  function agentOnce(): Promise<CliRun> {
    return nixship(
      [
        "lab",
        "exec",
        host,
        "--",
        process.execPath,
        binInHost,
        "agent",
        "--config",
        configFile,
        "--once",
        "--json",
      ],
      { env: env() },
    );
  }

  async function writeConfig(activationTimeout: number): Promise<void> {
    const releasePublic = (await nixship(["key", "public", releaseKeyFile])).stdout.trim();
    const cachePublic = (await nixship(["key", "public", keyFile])).stdout.trim();
    await writeFile(
      configFile,
      JSON.stringify({
        store: `file://${join(lab.dir, "cache")}`,
        channel: "recovery",
        host,
        releaseKeys: [releasePublic],
        cacheKeys: [cachePublic],
        stateDir: join(work, "agent-state"),
        activationTimeout,
      }),
    );
  }

  /** `again`: the system failed on the host before, and is published to it once more. */
  async function publish(system: ExampleSystem, again = false): Promise<void> {
    await setSystem(host, system, agentFleet);
    const r = await nixship([
      "release",
      "publish",
      "--fleet",
      agentFleet,
      "--on",
      host,
      "--key",
      keyFile,
      "--release-key",
      releaseKeyFile,
      ...(again ? ["--allow-failed"] : []),
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
  }

  async function record(): Promise<Record<string, unknown>> {
    const r = await nixship(["status", "--fleet", agentFleet, "--on", host, "--json"]);
    return (JSON.parse(r.stdout) as { hosts: Record<string, unknown>[] }).hosts[0] ?? {};
  }

  beforeAll(async () => {
    releaseKeyFile = join(work, "release.sec");
    const gen = await nixship([
      "key",
      "generate",
      "--name",
      "rc-release-1",
      "--out",
      releaseKeyFile,
    ]);
    expect(gen.code, gen.stderr).toBe(0);
    const doc = JSON.parse(await readFile(fleetFile, "utf8")) as FleetDoc;
    const agentHost = doc.hosts[host] as { delivery?: string; sshHost?: string };
    agentHost.delivery = "agent";
    delete agentHost.sshHost;
    doc.releases = { channel: "recovery", publicKeys: [gen.stdout.trim()], offlineTimeout: 60 };
    agentFleet = join(work, "agent-fleet.json");
    await writeFile(agentFleet, JSON.stringify({ ...doc, hosts: { [host]: agentHost } }));
    await mkdir(join(work, "agent-state"), { recursive: true });
    configFile = join(work, "agent.json");
  });

  it("ends within the agent's activation timeout, reported as a switch failure rolled back", async () => {
    await writeConfig(5);
    await publish("web-hang");
    const started = performance.now();
    const r = await agentOnce();
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeLessThan(5 + 60);
    expect(r.stdout).toMatch(/"type": *"failed"/);
    expect(await record()).toMatchObject({
      state: "failed",
      phase: "switch",
      rolledBack: true,
      error: expect.stringContaining("activation timeout"),
    });
    await expectOn(host, "web-v1", 1);
  });

  it("an agent killed mid-switch: the next start takes the lock over, goes back, and reports", async () => {
    await writeConfig(600);
    await publish("web-v2");
    const good = await agentOnce();
    expect(good.stdout, good.stderr).toMatch(/"type": *"applied"/);
    const v2 = await expectOn(host, "web-v2");

    // web-hang failed on the host in the test before: a release names it again only on purpose.
    await publish("web-hang", true);
    const agent = spawn(
      process.execPath,
      [
        NIXSHIP_BIN,
        "lab",
        "exec",
        host,
        "--",
        process.execPath,
        binInHost,
        "agent",
        "--config",
        configFile,
        "--json",
      ],
      { env: { ...process.env, ...env() }, stdio: ["ignore", "pipe", "ignore"], detached: true },
    );
    // Killed with its activate.sh, as a machine's crash or a cgroup's SIGKILL does, once the
    // hung switch runs: web-hang is current. (activate.sh runs in a process group of its own,
    // the pid its lock names, so that a signal meant for the agent alone spares it.)
    const deadline = Date.now() + 60_000;
    let running = await live(host);
    while (running.current !== systems["web-hang"] || !running.activation?.pid) {
      if (Date.now() > deadline) throw new Error("the agent never started the switch");
      await new Promise((resolve) => setTimeout(resolve, 250));
      running = await live(host);
    }
    if (agent.pid !== undefined) process.kill(-agent.pid, "SIGKILL");
    process.kill(-(running.activation?.pid as number), "SIGKILL");
    const held = await live(host);
    expect(held.activation).toMatchObject({ stale: true });
    expect(held.profile).toBe(systems["web-hang"]);

    // The agent starts again: it applies the interrupted release in full, taking the lock
    // over (stopping the old switch and going back first); the hang then times out.
    await writeConfig(5);
    const again = await agentOnce();
    expect(again.stdout).toMatch(/"type": *"recovering"/);
    expect(again.stdout).toContain("taking over");
    expect(await record()).toMatchObject({ state: "failed", phase: "switch", rolledBack: true });
    await expectOn(host, "web-v2", v2);
  });
});

describe("a host whose sshd stops taking new connections", () => {
  it("is not activated through the old shared connection: the confirmation would need a new one", async () => {
    const fleet = await loadFleet(fleetFile);
    const host = fleet.hosts.find((h) => h.name === "rc1");
    if (host === undefined) throw new Error("no rc1 in the fleet");
    const delivery = new SshDelivery(fleet.ssh);
    const before = await delivery.status(host);
    expect(before).toMatchObject({ reachable: true, current: systems["web-v2"] });
    // Only the listening sshd dies: the shared connection it already serves lives on.
    const state = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8")) as {
      hosts: { name: string; pid: number }[];
    };
    const pid = state.hosts.find((h) => h.name === "rc1")?.pid;
    if (pid === undefined) throw new Error("no rc1 in lab.json");
    process.kill(pid, "SIGKILL");
    expect(await delivery.status(host)).toMatchObject({ reachable: true });

    const phases: string[] = [];
    const outcome = await delivery.deploy(
      host,
      {
        path: parseStorePath(systems["web-v3"]).path,
        action: "switch",
        substituters: [],
        trustedKeys: [],
        commandChecks: [],
        httpChecks: [],
        confirmTimeout: 30,
        activationTimeout: 60,
      },
      (e) => {
        if (e.type === "phase") phases.push(e.phase);
      },
    );
    expect(outcome).toEqual({
      status: "failed",
      phase: "connect",
      message: expect.stringMatching(
        /^rc1: no new ssh connection can be made \(.*ECONNREFUSED\); the confirmation after the switch needs one, so the host was not activated$/,
      ),
      rolledBack: false,
    });
    expect(phases).not.toContain("switch");
    const after = await delivery.status(host);
    expect(after).toMatchObject({
      reachable: true,
      current: systems["web-v2"],
      profile: systems["web-v2"],
      generation: before.reachable ? before.generation : -1,
    });
  });
});
