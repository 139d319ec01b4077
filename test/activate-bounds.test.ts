// On real lab hosts: activate.sh bounds an activation (a switch that never ends, the
// example system web-hang, is stopped at --activation-timeout and the host goes back), a lock
// records its holder and is taken over when that holder is gone or past its deadline, abort,
// INT and TERM stop an activation under way and roll it back, HUP is ignored, and after every
// failure the profile (what the host boots next) is back on the previous generation. activate.sh
// is piped over SSH (`sh -s`), the real Nix substitutes from our cache on the lab's bridge.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ACTIVATE_EXIT,
  type ActivateOptions,
  type ActivationResult,
  abortArgs,
  activateArgs,
  activateScript,
  answerOf,
  confirmArgs,
  parseActivationResult,
  statusArgs,
} from "../src/host/activation.js";
import { type CliRun, nixship, run } from "../support/cli.js";
import { type RunningServer, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";

const LAB = "ab";
let work: string;
let labsDir: string;
let sshConfig: string;
let systems: Record<ExampleSystem, string>;
let server: RunningServer;
let publicKey: string;
let labNumber: number;
const addresses = new Map<string, string>();

/** A run of activate.sh on a host; `result` is undefined when it printed none (killed). */
interface HostRun {
  readonly code: number;
  readonly result: ActivationResult | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** Seconds from the start of the ssh command to its end. */
  readonly seconds: number;
}

const quote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;

/** Pipes activate.sh to the host over SSH; `fresh` forces a new connection (no ControlMaster). */
async function onHost(host: string, args: readonly string[], fresh = false): Promise<HostRun> {
  const started = performance.now();
  const r = await run(
    "ssh",
    [
      "-F",
      sshConfig,
      ...(fresh ? ["-o", "ControlPath=none"] : []),
      host,
      `sh -s -- ${args.map(quote).join(" ")}`,
    ],
    { input: Buffer.from(activateScript()) },
  );
  let result: ActivationResult | undefined;
  try {
    result = parseActivationResult(r.stdout, host);
  } catch {
    result = undefined;
  }
  return { ...r, result, seconds: (performance.now() - started) / 1000 };
}

/** A shell command on the host (its own namespaces: its /run, its view of /proc). */
function ssh(host: string, command: string): Promise<CliRun> {
  return run("ssh", ["-F", sshConfig, host, command]);
}

/**
 * activate SYSTEM on the host with our cache; `token` without a window is passed as
 * `--token` too, so that `abort --token` can find the activation while it runs.
 */
function activate(
  host: string,
  system: ExampleSystem,
  extra: Partial<ActivateOptions> = {},
): Promise<HostRun> {
  const args = activateArgs({
    path: systems[system],
    action: "switch",
    substituters: [server.url],
    trustedKeys: [publicKey],
    ...extra,
  });
  if (extra.token && !args.includes("--token")) args.push("--token", extra.token);
  return onHost(host, args);
}

/** What the host serves on /version, asked from the deployer over the lab's bridge. */
async function servedName(host: string): Promise<string> {
  const r = await run("curl", ["-s", "--max-time", "5", `http://${addresses.get(host)}/version`]);
  return r.stdout ? (JSON.parse(r.stdout) as { name: string }).name : "(nothing)";
}

async function status(host: string) {
  const { result } = await onHost(host, statusArgs());
  const answer = answerOf(result, "status");
  if (answer === undefined) throw new Error(`no status from ${host}: ${JSON.stringify(result)}`);
  return answer;
}

/** The host runs SYSTEM, boots it next (profile) at GENERATION, and nothing holds its lock. */
async function expectSettledOn(host: string, system: ExampleSystem, generation: number) {
  expect(await servedName(host)).toBe(system);
  expect(await status(host)).toMatchObject({
    current: systems[system],
    profile: systems[system],
    generation,
    activation: null,
  });
}

/** Polls `check` every 250 ms until it holds; fails past `seconds`. */
async function waitUntil(what: string, seconds: number, check: () => Promise<boolean>) {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds}s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Holds Nix's lock of the host's system profile (flock, as Nix takes it) for 300 s; returns the
 * holder's pid (the caller kills it and its child).
 */
async function holdProfileLock(host: string): Promise<string> {
  const held = await ssh(
    host,
    "setsid flock /nix/var/nix/profiles/system.lock sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
  );
  const holder = held.stdout.trim();
  expect(holder).toMatch(/^\d+$/);
  return holder;
}

/** Waits until web-hang's switch hangs on the host: it pointed /run/current-system at itself. */
async function waitHanging(host: string) {
  await waitUntil(`${host} runs web-hang's switch`, 60, async () => {
    const s = await status(host);
    return (
      s.current === systems["web-hang"] && s.activation?.command.startsWith("activate ") === true
    );
  });
  const s = await status(host);
  const activation = s.activation;
  if (!activation?.pid) throw new Error(`no activation on ${host}: ${JSON.stringify(s)}`);
  return { ...activation, pid: activation.pid };
}

/** The promise, or a failure once `seconds` pass. */
function within<T>(seconds: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${seconds}s`)), seconds * 1000);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** The lock's record on the host, key by key. */
async function lockInfo(host: string): Promise<Record<string, string>> {
  const r = await ssh(host, "cat /run/nixship/lock/info");
  return Object.fromEntries(
    r.stdout
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** Live processes of process group `group` (lab hosts share the deployer's pid namespace). */
function groupMembers(group: number): string[] {
  const members: string[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === group && fields[0] !== "Z") {
        members.push(
          `${pid} ${readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")}`,
        );
      }
    } catch {
      // gone meanwhile
    }
  }
  return members;
}

const epoch = () => Math.floor(Date.now() / 1000);
const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-activate-bounds-"));
  labsDir = join(work, "labs");
  systems = await buildExampleSystems();
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: labsDir },
  });
  expect(up.code, up.stderr).toBe(0);
  const lab = JSON.parse(up.stdout) as {
    number: number;
    hosts: { name: string; address: string }[];
    files: { sshConfig: string };
  };
  sshConfig = lab.files.sshConfig;
  labNumber = lab.number;
  for (const h of lab.hosts) addresses.set(h.name, h.address);
  ({ server, publicKey } = await serveLabCache(
    work,
    Object.values(systems),
    `10.231.${lab.number}.1`,
    "lab-bounds-cache-1",
  ));
  // Every host starts on web-v1, generation 1.
  for (const host of addresses.keys()) {
    const first = await activate(host, "web-v1");
    expect(first.code, first.stderr).toBe(0);
  }
});

afterAll(async () => {
  await server?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
  await rm(work, { recursive: true, force: true });
});

describe("the activation timeout", () => {
  const host = `${LAB}1`;

  it("stops a switch that never ends, and puts the system and the profile back (exit 10)", async () => {
    const r = await activate(host, "web-hang", { activationTimeout: 3 });
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.timedOut);
    expect(r.result).toMatchObject({
      ok: false,
      command: "activate",
      result: "timed-out",
      phase: "switch",
      exitCode: 10,
      message: "switch-to-configuration ran past the activation timeout of 3s; stopped it",
      path: systems["web-hang"],
      action: "switch",
      rolledBack: true,
      previous: systems["web-v1"],
      previousGeneration: 1,
      generation: 1,
    });
    // Bounded: the timeout, stopping the switch, and web-v1's switch again.
    expect(r.seconds).toBeLessThan(3 + 20);
    await expectSettledOn(host, "web-v1", 1);
  });

  it("leaves the host free for the next activation", async () => {
    const r = await activate(host, "web-v2");
    expect(r.code, r.stderr).toBe(0);
    // Generation 2 was web-hang's: the profile went back to 1 and dropped it, and its number is
    // not made again: web-v2 is 3.
    expect(r.result).toMatchObject({ result: "activated", generation: 3, previousGeneration: 1 });
    await expectSettledOn(host, "web-v2", 3);
    // No generation of the failed system is left for a rollback or the boot menu to take.
    expect((await status(host)).generations.map((g) => g.path)).toEqual([
      systems["web-v1"],
      systems["web-v2"],
    ]);
  });

  it("with --action test: stops the switch, switches back, and leaves the profile alone", async () => {
    const r = await activate(host, "web-hang", { action: "test", activationTimeout: 3 });
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.timedOut);
    expect(r.result).toMatchObject({
      result: "timed-out",
      phase: "switch",
      action: "test",
      rolledBack: true,
      generation: 3,
    });
    expect(r.seconds).toBeLessThan(3 + 20);
    await expectSettledOn(host, "web-v2", 3);
  });

  it("a failing switch (web-failing): the profile is back on the previous generation", async () => {
    const r = await activate(host, "web-failing");
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.switch);
    expect(r.result).toMatchObject({ result: "failed", phase: "switch", rolledBack: true });
    await expectSettledOn(host, "web-v2", 3);
  });

  it("a failing health check: the profile is back on the previous generation", async () => {
    const r = await activate(host, "web-broken", {
      healthChecks: [{ run: "curl -fsS --max-time 3 http://127.0.0.1/health", timeout: 10 }],
    });
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.health);
    expect(r.result).toMatchObject({ phase: "health", rolledBack: true, generation: 3 });
    await expectSettledOn(host, "web-v2", 3);
  });

  it("no confirmation within the window: the profile is back on the previous generation", async () => {
    const r = await activate(host, "web-v3", { confirmTimeout: 3, token: "ab-silent" });
    expect(r.code, r.stderr).toBe(0);
    expect(await servedName(host)).toBe("web-v3");
    // The watcher holds the lock through the window, and says so.
    expect((await status(host)).activation).toMatchObject({
      command: "confirmation window ab-silent",
      stale: false,
    });
    await waitUntil("the window rolls back", 30, async () => {
      const s = await status(host);
      return s.current === systems["web-v2"] && s.activation === null;
    });
    await expectSettledOn(host, "web-v2", 3);
  });

  it("abort during the window: the profile is back on the previous generation", async () => {
    const r = await activate(host, "web-v3", { confirmTimeout: 60, token: "ab-window" });
    expect(r.code, r.stderr).toBe(0);
    const aborted = await onHost(host, abortArgs("ab-window"), true);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.result).toMatchObject({ result: "rolled-back", current: systems["web-v2"] });
    await expectSettledOn(host, "web-v2", 3);
  });
});

describe("a confirmation window no watcher holds", () => {
  const host = `${LAB}1`;

  it("goes back at once, failed, rather than wait unwatched (the watcher could not start)", async () => {
    // A setsid that fails, as one would on a host short of processes: no watcher starts.
    const stub = await ssh(
      host,
      "mkdir -p /run/no-setsid && printf '#!/bin/sh\\nexit 1\\n' >/run/no-setsid/setsid && chmod +x /run/no-setsid/setsid",
    );
    expect(stub.code, stub.stderr).toBe(0);
    const before = await status(host);
    const args = activateArgs({
      path: systems["web-v3"],
      action: "switch",
      substituters: [server.url],
      trustedKeys: [publicKey],
      confirmTimeout: 60,
      token: "ab-unwatched",
    });
    const r = await run(
      "ssh",
      ["-F", sshConfig, host, `PATH=/run/no-setsid:$PATH sh -s -- ${args.map(quote).join(" ")}`],
      { input: Buffer.from(activateScript()) },
    );
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(parseActivationResult(r.stdout, host)).toMatchObject({
      ok: false,
      result: "failed",
      phase: "health",
      message:
        "the confirmation watcher did not start, so nothing would roll the host back were the deployer gone",
      rolledBack: true,
    });
    expect(await status(host)).toMatchObject({
      current: before.current,
      profile: before.profile,
      activation: null,
    });
    // Asked after, the token names the outcome.
    const asked = await onHost(host, abortArgs("ab-unwatched"), true);
    expect(asked.result).toMatchObject({ command: "abort", result: "rolled-back" });
    await ssh(host, "rm -rf /run/no-setsid");
  });

  it("a window that closes while another holds Nix's profile lock: the watcher still switches back, bounded, and says the profile could not move", async () => {
    const before = await status(host);
    const r = await activate(host, "web-v3", { confirmTimeout: 3, token: "ab-profile-locked" });
    expect(r.code, r.stderr).toBe(0);
    // Another Nix command holds the profile's lock (flock, as Nix takes it) past the test.
    const holder = await holdProfileLock(host);
    try {
      await waitUntil("the watcher switches back though the profile is locked", 45, async () => {
        const s = await status(host);
        return s.current === before.current && s.activation === null;
      });
      const asked = await onHost(host, abortArgs("ab-profile-locked"), true);
      expect(asked.result).toMatchObject({ command: "abort", result: "rollback-failed" });
      // Which step failed, and how.
      expect(asked.result && "message" in asked.result ? asked.result.message : "").toMatch(
        /^no confirmation within 3s; the rollback failed too \(nix-env --switch-generation \d+ took longer than 10s; stopped\)$/,
      );
    } finally {
      await ssh(host, `pkill -P ${holder}; kill ${holder}`);
    }
    // The lock free again, the next activation puts the profile right.
    const again = await activate(host, "web-v2");
    expect(again.code, again.stderr).toBe(0);
    expect(await status(host)).toMatchObject({ current: systems["web-v2"], activation: null });
  });

  it("an abort while the switch hangs and another holds Nix's profile lock: the host switches back, and the failed rollback names its step", async () => {
    const before = await status(host);
    const pending = activate(host, "web-hang", {
      activationTimeout: 120,
      token: "ab-abort-locked",
    });
    await waitHanging(host);
    const holder = await holdProfileLock(host);
    try {
      const aborted = await onHost(host, abortArgs("ab-abort-locked"), true);
      const message = `aborted by the deployer; the rollback failed too (nix-env --switch-generation ${before.generation} took longer than 10s; stopped)`;
      expect(aborted.result, aborted.stderr).toMatchObject({
        command: "abort",
        result: "rollback-failed",
        message,
        current: before.current,
      });
      const r = await within(30, "the aborted activation ends", pending);
      expect(r.result, `${r.stdout}\n${r.stderr}`).toMatchObject({
        result: "failed",
        phase: "switch",
        message,
        rolledBack: false,
      });
    } finally {
      await ssh(host, `pkill -P ${holder}; kill ${holder}`);
    }
    const again = await activate(host, "web-v2");
    expect(again.code, again.stderr).toBe(0);
    expect(await status(host)).toMatchObject({ current: systems["web-v2"], activation: null });
  });
});

describe("stopping an activation under way", () => {
  const host = `${LAB}2`;

  it("abort --token over a new connection while the switch hangs: rolled back, long before the timeout", async () => {
    const pending = activate(host, "web-hang", { activationTimeout: 120, token: "ab-abort" });
    const activation = await waitHanging(host);
    // status names the activation holding the lock, with its deadline.
    expect(activation).toMatchObject({
      command: `activate ${systems["web-hang"]}`,
      path: systems["web-hang"],
      stale: false,
    });
    expect(activation.since).toBeGreaterThan(epoch() - 120);
    expect(activation.deadline).toBeGreaterThanOrEqual((activation.since ?? 0) + 120);
    const aborted = await onHost(host, abortArgs("ab-abort"), true);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.result).toMatchObject({
      command: "abort",
      result: "rolled-back",
      exitCode: 0,
      message: "aborted by the deployer",
      current: systems["web-v1"],
      generation: 1,
      // The phase it stopped it in: the deployer's record names it.
      stoppedIn: "switch",
    });
    const r = await within(30, "the aborted activation ends", pending);
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(r.result, `${r.stdout}\n${r.stderr}`).toMatchObject({
      result: "failed",
      phase: "switch",
      exitCode: 6,
      message: "aborted by the deployer",
      rolledBack: true,
      generation: 1,
    });
    expect(r.seconds).toBeLessThan(60);
    await expectSettledOn(host, "web-v1", 1);
  });

  it("abort names the phase it stopped even when the rollback is slow (a loaded host)", async () => {
    const pending = activate(host, "web-hang", { activationTimeout: 120, token: "ab-slow" });
    const { pid } = await waitHanging(host);
    // On the host: once activate.sh records its rollback, it is held (SIGSTOP) for 2.5 s, as a
    // loaded machine would hold it. abort reads the lock again while it waits (after 1 s); the
    // phase it answers must still be the one it stopped, not the rollback it caused.
    const holder = ssh(
      host,
      `i=0; while [ $i -lt 1500 ] && ! grep -q '^phase=rollback$' /run/nixship/lock/info; do sleep 0.02; i=$((i+1)); done; kill -STOP ${pid} && sleep 2.5; kill -CONT ${pid}`,
    );
    const aborted = await onHost(host, abortArgs("ab-slow"), true);
    const held = await holder;
    expect(held.code, held.stderr).toBe(0);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.result).toMatchObject({
      command: "abort",
      result: "rolled-back",
      message: "aborted by the deployer",
      current: systems["web-v1"],
      stoppedIn: "switch",
    });
    const r = await within(30, "the aborted activation ends", pending);
    expect(r.result, `${r.stdout}\n${r.stderr}`).toMatchObject({
      result: "failed",
      phase: "switch",
      message: "aborted by the deployer",
      rolledBack: true,
    });
    await expectSettledOn(host, "web-v1", 1);
  });

  it("SIGTERM to activate.sh mid-switch: it stops the switch and rolls back (exit 6, interrupted)", async () => {
    const pending = activate(host, "web-hang", { activationTimeout: 120 });
    const { pid } = await waitHanging(host);
    expect((await ssh(host, `kill -TERM ${pid}`)).code).toBe(0);
    const r = await within(30, "the interrupted activation ends", pending);
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(r.result, `${r.stdout}\n${r.stderr}`).toMatchObject({
      result: "interrupted",
      phase: "switch",
      message: "interrupted by SIGTERM",
      rolledBack: true,
      generation: 1,
    });
    expect(r.seconds).toBeLessThan(60);
    await expectSettledOn(host, "web-v1", 1);
  });

  it("SIGHUP is ignored: the activation goes on, and ends by its timeout", async () => {
    const pending = activate(host, "web-hang", { activationTimeout: 6 });
    const { pid } = await waitHanging(host);
    expect((await ssh(host, `kill -HUP ${pid}`)).code).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect((await status(host)).activation).toMatchObject({ pid, stale: false });
    const r = await within(40, "the activation ends", pending);
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.timedOut);
    expect(r.result).toMatchObject({ result: "timed-out", rolledBack: true, generation: 1 });
    await expectSettledOn(host, "web-v1", 1);
  });

  it("the deployer's connection dropped mid-switch: the activation ends by its timeout and goes back", async () => {
    const started = performance.now();
    // Its own connection (no ControlMaster), so that killing the client drops it.
    const args = activateArgs({
      path: systems["web-hang"],
      action: "switch",
      substituters: [server.url],
      trustedKeys: [publicKey],
      activationTimeout: 6,
    });
    const client = spawn(
      "ssh",
      ["-F", sshConfig, "-o", "ControlPath=none", host, `sh -s -- ${args.map(quote).join(" ")}`],
      { stdio: ["pipe", "ignore", "ignore"] },
    );
    const gone = new Promise((resolve) => client.once("exit", resolve));
    client.stdin.on("error", () => {});
    client.stdin.end(activateScript());
    await waitHanging(host);
    client.kill("SIGKILL");
    await within(10, "the killed ssh ends", gone);
    await waitUntil("the host goes back by itself", 40, async () => {
      const s = await status(host);
      return s.activation === null && s.current === systems["web-v1"];
    });
    expect((performance.now() - started) / 1000).toBeLessThan(6 + 40);
    await expectSettledOn(host, "web-v1", 1);
  });
});

describe("the activation timeout covers realising the path", () => {
  let silent: Server;
  const sockets: Socket[] = [];

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent?.close(resolve));
  });

  it("a substituter that never answers: realise is stopped at the timeout, nothing changes (exit 10)", async () => {
    // Accepts connections and never says a word: Nix would wait minutes for it.
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, `10.231.${labNumber}.1`, resolve));
    const port = (silent.address() as { port: number }).port;
    const host = `${LAB}2`;
    // web-v3 was never on this host, so Nix must ask the substituter for it.
    const r = await activate(host, "web-v3", {
      substituters: [`http://10.231.${labNumber}.1:${port}`],
      activationTimeout: 3,
    });
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.timedOut);
    expect(r.result).toMatchObject({
      result: "timed-out",
      phase: "realise",
      exitCode: 10,
      message: `realising ${systems["web-v3"]} ran past the activation timeout of 3s; stopped it`,
      rolledBack: false,
      generation: 1,
    });
    expect(r.seconds).toBeLessThan(3 + 15);
    await expectSettledOn(host, "web-v1", 1);
  });
});

describe("a lock left behind", () => {
  const host = `${LAB}3`;

  it("activate.sh SIGKILLed mid-switch: the next activation takes over, stops the old switch and goes back first", async () => {
    const killed = onHost(
      host,
      activateArgs({
        path: systems["web-hang"],
        action: "switch",
        substituters: [server.url],
        trustedKeys: [publicKey],
        activationTimeout: 120,
      }),
    );
    const { pid } = await waitHanging(host);
    const group = Number((await lockInfo(host)).group);
    expect(group).toBeGreaterThan(0);
    const hung = groupMembers(group);
    expect(hung.join("\n")).toContain("sleep 100000");
    expect((await ssh(host, `kill -KILL ${pid}`)).code).toBe(0);
    // The holder is gone: the lock is stale, and the host still boots web-hang.
    await waitUntil("the lock is stale", 10, async () =>
      Boolean((await status(host)).activation?.stale),
    );
    expect(await status(host)).toMatchObject({
      profile: systems["web-hang"],
      generation: 2,
      activation: { pid, stale: true },
    });

    const r = await activate(host, "web-v2");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("taking over");
    // web-hang's generation 2, dropped by the takeover, is not made again: web-v2 is 3.
    expect(r.result).toMatchObject({ result: "activated", previousGeneration: 1, generation: 3 });
    const tookOver = r.result && "tookOver" in r.result ? (r.result.tookOver ?? "") : "";
    expect(tookOver).toContain(`activate ${systems["web-hang"]} (pid ${pid}, since `);
    expect(tookOver).toContain("its holder is gone");
    expect(tookOver).toContain(`stopped its process group ${group}`);
    expect(tookOver).toContain(`rolled back to generation 1 and ${systems["web-v1"]}`);
    expect(r.stderr).toContain(tookOver);
    // Nothing of the old switch is left (its sleep 100000 neither).
    expect(groupMembers(group)).toEqual([]);
    const ended = await within(10, "the killed activation's ssh ends", killed);
    expect(ended.result).toBeUndefined();
    await expectSettledOn(host, "web-v2", 3);
  });

  /** Starts a process on the host that lives on; returns its pid and start time. */
  async function liveProcess(): Promise<{ pid: number; start: string }> {
    const r = await ssh(host, "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!");
    const pid = Number(r.stdout.trim());
    const start = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[19] ?? "";
    expect(start).toMatch(/^\d+$/);
    return { pid, start };
  }

  async function plantLock(fields: Record<string, string | number>): Promise<void> {
    const text = Object.entries(fields)
      .map(([k, v]) => `${k}=${v}\n`)
      .join("");
    const r = await run(
      "ssh",
      ["-F", sshConfig, host, "mkdir -p /run/nixship/lock && cat > /run/nixship/lock/info"],
      { input: Buffer.from(text) },
    );
    expect(r.code, r.stderr).toBe(0);
  }

  it("a live holder within its deadline keeps the lock: refused (exit 8), naming it, since and until when", async () => {
    const holder = await liveProcess();
    const since = epoch() - 30;
    const deadline = epoch() + 3600;
    await plantLock({
      pid: holder.pid,
      start: holder.start,
      kind: "activate",
      command: "activate /nix/store/planted-future",
      path: "/nix/store/planted-future",
      since,
      deadline,
    });
    const r = await activate(host, "web-v1");
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.locked);
    expect(r.result).toEqual({
      ok: false,
      command: "activate",
      result: "locked",
      exitCode: 8,
      message: `another activation is in progress on this host (activate /nix/store/planted-future, pid ${holder.pid}, since ${iso(since)}, until ${iso(deadline)}); it is taken over after that deadline`,
      since,
      deadline,
    });
    expect((await status(host)).activation).toEqual({
      command: "activate /nix/store/planted-future",
      path: "/nix/store/planted-future",
      pid: holder.pid,
      since,
      deadline,
      stale: false,
    });
    expect(readFileSync(`/proc/${holder.pid}/stat`, "utf8")).toContain("(sleep)");
    await ssh(host, `kill ${holder.pid}; rm -rf /run/nixship/lock`);
  });

  it("a live holder past its deadline: taken over, and the holder killed", async () => {
    const holder = await liveProcess();
    const since = epoch() - 700;
    await plantLock({
      pid: holder.pid,
      start: holder.start,
      kind: "activate",
      command: "activate /nix/store/planted-past",
      path: "/nix/store/planted-past",
      since,
      deadline: epoch() - 60,
    });
    expect((await status(host)).activation).toMatchObject({ pid: holder.pid, stale: true });
    const r = await activate(host, "web-v1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("taking over");
    const tookOver = r.result && "tookOver" in r.result ? (r.result.tookOver ?? "") : "";
    expect(tookOver).toContain(
      `activate /nix/store/planted-past (pid ${holder.pid}, since ${iso(since)})`,
    );
    expect(tookOver).toContain("past its deadline");
    expect(tookOver).toContain("killed it");
    await waitUntil("the holder is gone", 5, async () => {
      try {
        return !readFileSync(`/proc/${holder.pid}/stat`, "utf8").includes("(sleep)");
      } catch {
        return true;
      }
    });
    expect(r.result).toMatchObject({ result: "activated", generation: 4 });
    await expectSettledOn(host, "web-v1", 4);
  });

  it("abort of an activation whose activate.sh was killed: abort takes over, rolls back and says so", async () => {
    const killed = activate(host, "web-hang", { activationTimeout: 120, token: "ab-orphan" });
    const { pid } = await waitHanging(host);
    const group = Number((await lockInfo(host)).group);
    await ssh(host, `kill -KILL ${pid}`);
    const aborted = await onHost(host, abortArgs("ab-orphan"), true);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(aborted.result).toMatchObject({
      command: "abort",
      result: "rolled-back",
      current: systems["web-v1"],
      generation: 4,
    });
    expect(aborted.stderr).toContain("taking over");
    expect(groupMembers(group)).toEqual([]);
    await within(10, "the killed activation's ssh ends", killed);
    await expectSettledOn(host, "web-v1", 4);
    // A confirmation for it now is told it was rolled back.
    const late = await onHost(host, confirmArgs("ab-orphan"), true);
    expect(late.code).toBe(ACTIVATE_EXIT.unconfirmed);
  });

  it("a holder that died between its new generation's link and the switch: the takeover removes that generation, and its number is not made again", async () => {
    // What activate.sh leaves when killed there: the number recorded, the link made, the lock
    // naming it, the profile still on the generation before.
    const before = await status(host);
    expect(before).toMatchObject({ current: systems["web-v1"], generation: 4 });
    const gone = Number((await ssh(host, "sh -c 'echo $$'")).stdout.trim());
    await ssh(
      host,
      `mkdir -p /nix/var/nixship/generations && echo 6 > /nix/var/nixship/generations/_nix_var_nix_profiles_system && ln -s ${systems["web-v2"]} /nix/var/nix/profiles/system-6-link`,
    );
    await plantLock({
      pid: gone,
      start: 1,
      kind: "activate",
      command: `activate ${systems["web-v2"]}`,
      path: systems["web-v2"],
      action: "switch",
      profile: "/nix/var/nix/profiles/system",
      prev_gen: 4,
      prev_system: systems["web-v1"],
      phase: "profile",
      since: epoch() - 10,
      deadline: epoch() + 600,
      new_gen: 6,
    });
    const r = await activate(host, "web-v3");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("taking over");
    expect(r.result).toMatchObject({ result: "activated", previousGeneration: 4, generation: 7 });
    // Generation 6 never ran: no rollback or boot menu may take it.
    expect((await status(host)).generations.map((g) => g.generation)).not.toContain(6);
    expect((await ssh(host, "ls /nix/var/nix/profiles")).stdout).not.toContain("system-6-link");
    await expectSettledOn(host, "web-v3", 7);
  });
});

describe("command health checks", () => {
  const host = `${LAB}1`;

  it("are retried within their timeout: a service that is ready only after a few tries passes", async () => {
    // Fails its first three tries, then passes: each try appends a line to a file of the host's.
    const tries = "/tmp/nixship-slow-check";
    await ssh(host, `rm -f ${tries}`);
    const check = `echo try >> ${tries}; [ "$(wc -l < ${tries})" -gt 3 ]`;
    const r = await activate(host, "web-v2", { healthChecks: [{ run: check, timeout: 60 }] });
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({ result: "activated" });
    expect((await ssh(host, `wc -l < ${tries}`)).stdout.trim()).toBe("4");
    expect(await servedName(host)).toBe("web-v2");
  });

  it("still fail once their timeout ends", async () => {
    const r = await activate(host, "web-v3", { healthChecks: [{ run: "false", timeout: 3 }] });
    expect(r.code, r.stderr).toBe(ACTIVATE_EXIT.health);
    expect(r.result).toMatchObject({ result: "failed", phase: "health", rolledBack: true });
    expect(await servedName(host)).toBe("web-v2");
  });
});

describe("a boot during a confirmation window", () => {
  const host = `${LAB}3`;

  it("brings the host back on the unconfirmed system, which its status calls failed, never confirmed, until an activation decides anew", async () => {
    const r = await activate(host, "web-v3", { confirmTimeout: 300, token: "ab-cut" });
    expect(r.code, r.stderr).toBe(0);
    // A panic, a watchdog, a power cut: the host boots its profile's system, /run empty.
    const rebooted = await nixship(["lab", "reboot", host, "--name", LAB], {
      env: { NIXSHIP_LAB_DIR: labsDir },
    });
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(await status(host)).toMatchObject({
      current: systems["web-v3"],
      activation: null,
      failed: {
        path: systems["web-v3"],
        reason: "a boot cut its confirmation window (token ab-cut): it was never confirmed",
      },
    });
    const again = await activate(host, "web-v1");
    expect(again.code, again.stderr).toBe(0);
    expect(await status(host)).toMatchObject({ current: systems["web-v1"], failed: null });
  });

  it("a window confirmed leaves nothing for a later boot to report", async () => {
    const r = await activate(host, "web-v2", { confirmTimeout: 60, token: "ab-kept" });
    expect(r.code, r.stderr).toBe(0);
    const confirmed = await onHost(host, confirmArgs("ab-kept"), true);
    expect(confirmed.result).toMatchObject({ result: "confirmed" });
    const rebooted = await nixship(["lab", "reboot", host, "--name", LAB], {
      env: { NIXSHIP_LAB_DIR: labsDir },
    });
    expect(rebooted.code, rebooted.stderr).toBe(0);
    expect(await status(host)).toMatchObject({ current: systems["web-v2"], failed: null });
  });
});
