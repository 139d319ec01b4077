// A pull agent on each lab host (`lab up --agents`, `lab agents start|stop`). A lab host sees
// the machine's files except its own /nix, /etc/nix, /run, /tmp and /root, and every host's
// hostname is the machine's, so every host gets, in its own /run (HOST_VIEW):
//   nixship/   nixship's package (dist/, node_modules/), wherever it is installed (under /tmp
//              or /root too): the nixship that started the lab
//   node       the Node.js binary that runs it
// and each agent also:
//   cache/     the lab's directory cache: the agent's store (releases, status, closures)
//   agent/     the host's agent directory: its config (its own host name) and state
// bound there by the host's init (lab-host.ts) before /tmp and /root are hidden. The agent runs
// in the host's namespaces, detached, its output in AGENT_LOG of the host's agent directory.

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAgentConfig } from "../agent/config.js";
import { InputError, OperationError } from "../errors.js";
import { DEFAULT_ACTIVATION_TIMEOUT } from "../host/activation.js";
import { readHeartbeats } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { PACKAGE_ROOT } from "../util/package-root.js";
import { descendantsOf, type HostBind, processAlive, stopProcesses } from "./lab-host.js";
import { type LabState, writeLabState } from "./lab-state.js";
import { LAB_CHANNEL, type LabEvent, type LabKeys } from "./lab-types.js";
import type { LabHostLayout, LabLayout } from "./layout.js";

/** Where a host sees its agent's parts (inside its own /run). */
export const HOST_VIEW = "/run/nixship-lab";
export { LAB_CHANNEL } from "./lab-types.js";
export const AGENT_LOG = "agent.log";
/** Seconds between an agent's polls on a lab, and polls between its heartbeats. */
export const LAB_POLL_INTERVAL = 2;
export const LAB_HEARTBEAT_EVERY = 5;

const CLI = fileURLToPath(new URL("../cli/bin.js", import.meta.url));

/** The host's agent directory on the machine: its config, state and log. */
export function agentDir(host: LabHostLayout): string {
  return join(host.dir, "agent");
}

/** What every host's init binds into HOST_VIEW: nixship and its Node.js. */
export function nixshipBinds(): HostBind[] {
  return [
    [PACKAGE_ROOT, `${HOST_VIEW}/nixship`],
    [process.execPath, `${HOST_VIEW}/node`],
  ];
}

/** What the host's init binds into HOST_VIEW: with agents, also the cache and its agent's. */
export function hostBinds(lab: LabLayout, host: LabHostLayout, agents: boolean): HostBind[] {
  return agents ? agentBinds(lab, host) : nixshipBinds();
}

/** What the host's init binds into HOST_VIEW for its agent. */
export function agentBinds(lab: LabLayout, host: LabHostLayout): HostBind[] {
  return [
    ...nixshipBinds(),
    [join(lab.dir, "cache"), `${HOST_VIEW}/cache`],
    [agentDir(host), `${HOST_VIEW}/agent`],
  ];
}

/** Creates what the binds need (before the host starts): the cache and the agent directory. */
export async function prepareAgentDirs(lab: LabLayout, host: LabHostLayout): Promise<void> {
  await mkdir(join(lab.dir, "cache"), { recursive: true });
  await mkdir(join(agentDir(host), "state"), { recursive: true, mode: 0o700 });
}

/** The host's agent config, as the host sees it. */
export function labAgentConfig(
  host: LabHostLayout,
  keys: { readonly release: string; readonly cache: string },
): string {
  return `${JSON.stringify(
    {
      store: `file://${HOST_VIEW}/cache`,
      channel: LAB_CHANNEL,
      host: host.name,
      releaseKeys: [keys.release],
      cacheKeys: [keys.cache],
      stateDir: `${HOST_VIEW}/agent/state`,
      pollInterval: LAB_POLL_INTERVAL,
      jitter: 0.1,
      heartbeatEvery: LAB_HEARTBEAT_EVERY,
    },
    null,
    2,
  )}\n`;
}

export async function writeLabAgentConfig(
  host: LabHostLayout,
  keys: { readonly release: string; readonly cache: string },
): Promise<string> {
  const file = join(agentDir(host), "config.json");
  await writeFile(file, labAgentConfig(host, keys));
  return file;
}

/**
 * Starts the host's agent in its namespaces (those of its sshd, `hostPid`), detached; returns
 * the agent's pid. nsenter without --fork execs the agent, so the pid is the agent's own.
 */
export async function startLabAgent(host: LabHostLayout, hostPid: number): Promise<number> {
  const log = openSync(join(agentDir(host), AGENT_LOG), "a");
  try {
    const child = spawn(
      "nsenter",
      [
        "-t",
        String(hostPid),
        "-m",
        "-n",
        "--",
        `${HOST_VIEW}/node`,
        `${HOST_VIEW}/nixship/${relative(PACKAGE_ROOT, CLI)}`,
        "agent",
        "--config",
        `${HOST_VIEW}/agent/config.json`,
      ],
      {
        cwd: "/",
        detached: true,
        stdio: ["ignore", log, log],
        env: {
          PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          HOME: "/root",
          LANG: "C.UTF-8",
        },
      },
    );
    child.unref();
    if (child.pid === undefined) {
      throw new OperationError("lab-agent-failed", `cannot start the agent of ${host.name}`);
    }
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** Whether `pid` is a process that has not exited (neither gone nor a zombie). */
async function isRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
}

/** Whether `pid` is a running agent (not a recycled pid or a zombie). */
export async function isAgentProcess(pid: number): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    if (!(await isRunning(pid))) return false;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    // A process in the middle of an exec (nsenter becoming node) has, for a moment, an empty
    // command line: asked again, not judged by it.
    if (cmdline === "" && attempt < 20) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      continue;
    }
    return cmdline.split("\0").includes("agent") && cmdline.includes(`${HOST_VIEW}/agent/`);
  }
}

/** The last lines of the host's agent log (for errors). */
export async function agentLogTail(host: LabHostLayout, lines = 10): Promise<string> {
  const text = await readFile(join(agentDir(host), AGENT_LOG), "utf8").catch(() => "");
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** Seconds an agent has to write its first heartbeat once started. */
const START_TIMEOUT = 30;

/** Writes every host's agent config (`lab up --agents`; edit them, then restart the agent). */
export async function writeAgentConfigs(lab: LabLayout, keys: LabKeys): Promise<void> {
  const release = keys.release;
  if (release === undefined) throw new Error("a lab with agents has a release key");
  for (const host of lab.hosts) await writeLabAgentConfig(host, { release, cache: keys.cache });
}

/**
 * Starts the agents of `hosts` (default: all) that do not run, each in its host; resolves,
 * with their pids in the lab's state, once each has written a heartbeat (it has started and
 * polled the store).
 */
export async function startAgents(
  lab: LabLayout,
  state: LabState,
  emit: (e: LabEvent) => void,
  hosts?: readonly string[],
): Promise<LabState> {
  let current = state;
  const started: { host: LabHostLayout; pid: number; at: number }[] = [];
  for (const host of lab.hosts) {
    if (hosts !== undefined && !hosts.includes(host.name)) continue;
    const entry = current.hosts.find((h) => h.name === host.name);
    if (entry === undefined) continue;
    if (entry.agentPid !== undefined && (await isAgentProcess(entry.agentPid))) continue;
    const at = Date.now();
    const pid = await startLabAgent(host, entry.pid);
    current = withAgentPid(current, host.name, pid);
    await writeLabState(lab.dir, current);
    started.push({ host, pid, at });
  }
  await waitForHeartbeats(lab, started);
  for (const { host, pid } of started) emit({ type: "agent-up", host: host.name, pid });
  return current;
}

/**
 * The agent with this pid, when it still runs, stopped as its service unit stops it
 * (stopAgent): what a host's shutdown does first (`lab reboot`).
 */
export async function stopHostAgent(pid: number): Promise<void> {
  if (await isAgentProcess(pid)) await stopAgent(pid);
}

/** Stops the agents of `hosts` (default: all), each as its service unit does (stopAgent). */
export async function stopAgents(
  lab: LabLayout,
  state: LabState,
  hosts?: readonly string[],
): Promise<LabState> {
  let current = state;
  for (const entry of state.hosts) {
    if (hosts !== undefined && !hosts.includes(entry.name)) continue;
    if (entry.agentPid === undefined) continue;
    await stopHostAgent(entry.agentPid);
    current = withAgentPid(current, entry.name, undefined);
    await writeLabState(lab.dir, current);
  }
  return current;
}

/**
 * How long a stopped agent may take to finish the activation it runs: the activation's own
 * bound (the lab's agents take the default) and its settling. The service unit allows 30 minutes
 * (TimeoutStopSec); a lab agent's activation ends well within this.
 */
const AGENT_STOP_GRACE_MS = (DEFAULT_ACTIVATION_TIMEOUT + 120) * 1000;

/**
 * Stops an agent as its service unit does (KillMode=mixed): TERM to the agent, which finishes
 * the activation in progress, if any, and exits; one still running after AGENT_STOP_GRACE_MS
 * is killed with every process it started (the activation in its own process group too, as a
 * unit's cgroup holds it), so that no activation outlives its agent holding the host's lock.
 */
async function stopAgent(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + AGENT_STOP_GRACE_MS;
  while (processAlive(pid) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (!processAlive(pid)) return;
  await stopProcesses([pid, ...descendantsOf(pid)]);
}

function withAgentPid(state: LabState, host: string, pid: number | undefined): LabState {
  return {
    ...state,
    hosts: state.hosts.map((h) => {
      if (h.name !== host) return h;
      const { agentPid: _, ...rest } = h;
      return pid === undefined ? rest : { ...rest, agentPid: pid };
    }),
  };
}

/**
 * Where the host's agent writes its heartbeats, as this machine reaches it: the lab's cache
 * when its config names a directory store (the lab's cache, as the host sees it), else the
 * store its config names (S3: read with this machine's credentials). A config that cannot be
 * read names the lab's cache: the agent exits on it, which the wait reports.
 */
async function heartbeatStoreUrl(lab: LabLayout, host: LabHostLayout): Promise<string> {
  const labCache = `file://${join(lab.dir, "cache")}`;
  const file = join(agentDir(host), "config.json");
  try {
    const { store } = parseAgentConfig(await readFile(file, "utf8"), file);
    return store.startsWith("file:") ? labCache : store;
  } catch {
    return labCache;
  }
}

async function waitForHeartbeats(
  lab: LabLayout,
  started: readonly { host: LabHostLayout; pid: number; at: number }[],
): Promise<void> {
  if (started.length === 0) return;
  const storeOf = new Map<string, string>();
  for (const { host } of started) storeOf.set(host.name, await heartbeatStoreUrl(lab, host));
  const stores = new Map<string, ObjectStore>();
  try {
    for (const url of new Set(storeOf.values())) stores.set(url, await openStore(url));
    const deadline = Date.now() + START_TIMEOUT * 1000;
    for (;;) {
      const waiting = [];
      for (const [url, store] of stores) {
        const beats = (await readHeartbeats(store)).hosts;
        // File times have a resolution of a second or coarser: a heartbeat from before this
        // start (an agent stopped and started again) must not count.
        const late = ({ host, at }: (typeof started)[number]) =>
          storeOf.get(host.name) === url &&
          (beats.get(host.name)?.at.getTime() ?? 0) < Math.floor(at / 1000) * 1000;
        waiting.push(...started.filter(late));
      }
      if (waiting.length === 0) return;
      const dead = [];
      // Started by this process a moment ago: judged by whether it has exited, not by its
      // command line, which is empty while nsenter execs node.
      for (const w of waiting) if (!(await isRunning(w.pid))) dead.push(w);
      const failed = dead[0] ?? (Date.now() > deadline ? waiting[0] : undefined);
      if (failed !== undefined) {
        const tail = await agentLogTail(failed.host);
        throw new OperationError(
          "lab-agent-failed",
          `the agent of ${failed.host.name} ${dead.length > 0 ? "exited" : `wrote no heartbeat within ${START_TIMEOUT} s`}${tail ? `:\n${tail}` : ""}`,
          { hint: `its log is ${join(agentDir(failed.host), AGENT_LOG)}` },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    for (const store of stores.values()) await store.close();
  }
}

/** The hosts a `lab agents` command names, checked against the lab. */
export function selectLabHosts(state: LabState, names: readonly string[]): string[] | undefined {
  if (names.length === 0) return undefined;
  const known = new Set(state.hosts.map((h) => h.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new InputError(
      "unknown-lab-host",
      `lab '${state.name}' has no host ${unknown.map((n) => `'${n}'`).join(", ")}`,
      { hint: `its hosts: ${[...known].join(", ")}` },
    );
  }
  return [...names];
}
