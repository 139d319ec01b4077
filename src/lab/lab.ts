// The lab's operations: up (make N hosts), start and stop its agents, list, and finding a host
// for `lab exec` (down: lab-down.ts). Needs root: namespaces, links and mounts.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isPaused, setPaused } from "../agent/state.js";
import { InputError, OperationError } from "../errors.js";
import type { SystemSpec } from "../fleet/fleet.js";
import { mapLimit } from "../util/pool.js";
import type { HostNix } from "./host-nix.js";
import type { HostShell } from "./host-shell.js";
import {
  agentDir,
  hostBinds,
  prepareAgentDirs,
  selectLabHosts,
  startAgents,
  stopAgents,
  writeAgentConfigs,
} from "./lab-agents.js";
import { startAnchor } from "./lab-anchor.js";
import { setBootCounting } from "./lab-boot.js";
import { tearDown } from "./lab-down.js";
import {
  checkFleetToMerge,
  EXAMPLE_SYSTEM,
  mergeIntoFleet,
  systemSpec,
  writeLabFleet,
} from "./lab-fleet.js";
import { HOSTS_AT_ONCE, type HostSoftware, prepareHost, startHost } from "./lab-host.js";
import { createBridge, createHostNetwork, listLinks, netnsPids } from "./lab-network.js";
import { installOnHosts, pinnedFlakeDir, writePinnedFlake } from "./lab-pinned.js";
import { labReboot, writePowerScript } from "./lab-reboot.js";
import { type LabState, listLabStates, readLabState, writeLabState } from "./lab-state.js";
import type { LabEvent } from "./lab-types.js";
import { freeLabNumber, type LabLayout, labLayout } from "./layout.js";
import { requireRoot } from "./require-root.js";
import { clientSshConfig, knownHosts } from "./ssh-files.js";
import { makeEd25519Key } from "./ssh-keygen.js";

/** Where labs live unless NIXSHIP_LAB_DIR says otherwise. */
export const DEFAULT_LABS_DIR = "/var/lib/nixship/labs";

export function labsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NIXSHIP_LAB_DIR || DEFAULT_LABS_DIR;
}

export type { LabEvent } from "./lab-types.js";

export interface LabUpOptions {
  readonly labsDir: string;
  readonly name: string;
  readonly count: number;
  /** What the lab's fleet file says the hosts run (default: the example web-v1). */
  readonly system?: SystemSpec;
  /** A fleet file of the user's to merge the lab's hosts into. */
  readonly mergeInto?: string;
  /** Starts a pull agent on each host, and makes the lab's fleet file use them. */
  readonly agents?: boolean;
  /** The Nix the hosts run instead of the machine's (`--nix`, resolved by host-nix.ts). */
  readonly nix?: HostNix;
  /** `--sh`: what the hosts' sh is (host-shell.ts); absent: the machine's. */
  readonly shell?: HostShell;
  /** `--boot-counting T`: the hosts' boot loaders count boots, T tries per new entry. */
  readonly bootCounting?: number;
  /**
   * `--pinned`: the hosts are installed with a pinned system (lab-pinned.ts) and the fleet
   * file reaches them as the deploy user through sudo.
   */
  readonly pinned?: boolean;
  readonly onEvent?: (event: LabEvent) => void;
  /**
   * Stops the start between its steps (an interrupt): what was made is then taken down, as after
   * a failure, and labUp rejects with the signal's reason.
   */
  readonly signal?: AbortSignal;
}

export interface LabUpResult {
  readonly state: LabState;
  readonly layout: LabLayout;
  /** true when the lab was already up with these hosts and nothing was done. */
  readonly alreadyUp: boolean;
  /** `mergeInto`: the user's fleet file that holds the hosts, and whether it was created. */
  readonly mergedInto?: { readonly file: string; readonly created: boolean };
}

export async function labUp(options: LabUpOptions): Promise<LabUpResult> {
  requireRoot("nixship lab up");
  const emit = options.onEvent ?? (() => {});
  const labDir = join(options.labsDir, options.name);
  const existing = await readLabState(labDir);
  if (existing !== undefined && existing.hosts.length === 0) {
    throw new InputError(
      "lab-half-made",
      `lab '${options.name}' has no host yet: another 'lab up' is starting it, or one was killed before any host ran`,
      {
        hint: `wait for the other one; if none runs, 'nixship lab down --name ${options.name}' clears it, then 'nixship lab up' again`,
      },
    );
  }
  if (existing !== undefined) {
    const layout = labLayout(
      options.labsDir,
      existing.name,
      existing.number,
      existing.hosts.length,
    );
    if (
      existing.hosts.length === options.count &&
      (existing.agents === true) === (options.agents === true) &&
      existing.nix === options.nix?.version &&
      (existing.shell ?? "system") === (options.shell ?? "system") &&
      (existing.pinned === true) === (options.pinned === true) &&
      (await isRunning(existing))
    ) {
      return { state: existing, layout, alreadyUp: true };
    }
    throw new InputError(
      "lab-exists",
      `lab '${options.name}' already exists with ${existing.hosts.length} hosts${existing.agents === true ? " and agents" : ""}${existing.nix ? ` on ${existing.nix}` : ""}${existing.shell === "bash" ? ", bash as their sh" : ""}${(await isRunning(existing)) ? "" : " (not all running)"}`,
      { hint: `run 'nixship lab down --name ${options.name}' first` },
    );
  }
  if (options.mergeInto !== undefined) await checkFleetToMerge(options.mergeInto);
  const stopIfAsked = () => options.signal?.throwIfAborted();
  stopIfAsked();
  await claimLabDir(options.labsDir, options.name);
  const layout = await claimLayout(options).catch(async (err: unknown) => {
    await rm(labDir, { recursive: true, force: true });
    throw err;
  });
  try {
    const agents = options.agents === true;
    const software = { nix: options.nix, shell: options.shell };
    const built = await build(layout, agents, software, options, stopIfAsked);
    stopIfAsked();
    const pinned = options.pinned === true;
    const system = pinned
      ? systemSpec(`path:${pinnedFlakeDir(layout)}#web-v2`)
      : (options.system ?? systemSpec(EXAMPLE_SYSTEM));
    const keys = await writeLabFleet(layout, system, agents, pinned);
    const mergedInto =
      options.mergeInto === undefined
        ? undefined
        : {
            file: options.mergeInto,
            created: await mergeIntoFleet(options.mergeInto, layout, system),
          };
    if (agents) await writeAgentConfigs(layout, keys);
    stopIfAsked();
    if (pinned)
      return {
        state: await installPinned(options, layout, built, keys.cache, stopIfAsked),
        layout,
        alreadyUp: false,
      };
    const state = agents ? await startAgents(layout, built, emit) : built;
    return { state, layout, alreadyUp: false, ...(mergedInto ? { mergedInto } : {}) };
  } catch (err) {
    await tearDown(layout.name, layout.number, layout.dir).catch(() => undefined);
    throw err;
  }
}

/**
 * The pinned lab's hosts installed with web-v1 of the lab's pinned flake, then booted into it
 * (a machine's first boot after its installation).
 */
async function installPinned(
  options: LabUpOptions,
  layout: LabLayout,
  built: LabState,
  cacheKey: string,
  stopIfAsked: () => void,
): Promise<LabState> {
  const flake = await writePinnedFlake(layout, cacheKey);
  await installOnHosts(layout, `path:${flake}#web-v1`);
  const state: LabState = { ...built, pinned: true };
  await writeLabState(layout.dir, state);
  for (const host of layout.hosts) {
    stopIfAsked();
    const booted = await labReboot(options.labsDir, layout.name, host.name);
    if (!booted.up) {
      throw new OperationError("lab-install", `${host.name} did not boot its pinned system`, {
        hint: "see its console in 'nixship lab reboot' and take the lab down",
      });
    }
  }
  return (await readLabState(layout.dir)) ?? state;
}

/**
 * Claims the lab's directory by creating it (mkdir fails when it exists), so that two `lab up`
 * of one name never build into one directory, nor take down each other's hosts on a failure.
 */
async function claimLabDir(labsDir: string, name: string): Promise<void> {
  await mkdir(labsDir, { recursive: true, mode: 0o700 });
  await mkdir(join(labsDir, name), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
    throw new InputError(
      "lab-busy",
      `lab '${name}' has a directory but no state yet: another 'lab up' is starting it, or one was killed before it wrote anything`,
      { hint: `wait for the other one; if none runs, 'nixship lab down --name ${name}' clears it` },
    );
  });
}

/**
 * Picks a free lab number and claims it by creating its bridge: `ip link add` fails when the
 * bridge exists, so two labs starting at once never share a subnet.
 */
async function claimLayout(options: LabUpOptions): Promise<LabLayout> {
  const used = await usedLabNumbers(options.labsDir);
  for (;;) {
    const number = freeLabNumber(used);
    const layout = labLayout(options.labsDir, options.name, number, options.count);
    try {
      await createBridge(layout);
      return layout;
    } catch (err) {
      if (!/File exists/.test((err as Error).message)) throw err;
      used.add(number);
    }
  }
}

/**
 * Starts the lab's hosts, `stopIfAsked` between each host's steps; every host in hand is finished
 * or stopped before the build rejects, so the teardown that follows finds all that was made.
 */
async function build(
  layout: LabLayout,
  agents: boolean,
  software: HostSoftware,
  options: Pick<LabUpOptions, "bootCounting" | "onEvent">,
  stopIfAsked: () => void,
): Promise<LabState> {
  const emit = options.onEvent ?? (() => {});
  const bootCounting = options.bootCounting;
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  // Written first, so that a crash from here on leaves a state 'lab down' can read.
  const pending: LabState = {
    version: 1,
    name: layout.name,
    number: layout.number,
    createdAt: new Date().toISOString(),
    ...(agents ? { agents } : {}),
    ...(software.nix ? { nix: software.nix.version, nixBin: software.nix.bin } : {}),
    ...(software.shell === "bash" ? { shell: software.shell } : {}),
    hosts: [],
  };
  await writeLabState(layout.dir, pending);
  const anchor = startAnchor(layout);
  await makeEd25519Key(
    layout.files.clientKey,
    `nixship-lab-${layout.name}`,
    "make the lab's client key",
  );
  const clientPublicKey = await readFile(`${layout.files.clientKey}.pub`, "utf8");
  const hostKeys = new Map<string, string>();
  // Kept in the lab's order, whichever host comes up first; the state names each host once it runs.
  const started: (LabState["hosts"][number] | undefined)[] = layout.hosts.map(() => undefined);
  const running = () => started.filter((h): h is LabState["hosts"][number] => h !== undefined);
  let saved = Promise.resolve();
  await mapLimit(layout.hosts, HOSTS_AT_ONCE, async (host, i) => {
    stopIfAsked();
    emit({ type: "host-starting", host: host.name, address: host.address });
    hostKeys.set(host.name, await prepareHost(host, clientPublicKey));
    await writePowerScript(layout, host, anchor);
    if (bootCounting !== undefined) await setBootCounting(host.dir, bootCounting);
    stopIfAsked();
    await createHostNetwork(layout, host);
    if (agents) await prepareAgentDirs(layout, host);
    stopIfAsked();
    const pid = await startHost(host, hostBinds(layout, host, agents), software);
    started[i] = { name: host.name, address: host.address, netns: host.netns, pid };
    // One write at a time, each of every host up by then (they share a temporary file).
    const state = { ...pending, hosts: running() };
    saved = saved.then(() => writeLabState(layout.dir, state));
    await saved;
    emit({ type: "host-up", host: host.name, pid });
  });
  const hosts = running();
  await writeFile(layout.files.knownHosts, knownHosts(layout, hostKeys));
  await writeFile(layout.files.sshConfig, clientSshConfig(layout));
  return { ...pending, hosts };
}

/** Lab numbers taken by a lab on disk or by a bridge that is still there. */
async function usedLabNumbers(labsDir: string): Promise<Set<number>> {
  const used = new Set((await listLabStates(labsDir)).map((s) => s.number));
  for (const link of await listLinks()) {
    const m = /^nxs(\d+)$/.exec(link.name);
    if (m) used.add(Number(m[1]));
  }
  return used;
}

async function isRunning(state: LabState): Promise<boolean> {
  const pids = await Promise.all(state.hosts.map((h) => netnsPids(h.netns)));
  return state.hosts.every((h, i) => pids[i]?.includes(h.pid));
}

export const LAB_AGENT_ACTIONS = ["start", "stop", "pause", "resume"] as const;
export type LabAgentAction = (typeof LAB_AGENT_ACTIONS)[number];

/** What `lab agents` did: the lab after it, the hosts it acted on, and which agents are paused. */
export interface LabAgentsResult {
  readonly state: LabState;
  /** In the lab's order. */
  readonly hosts: readonly string[];
  /** Every host of the lab whose agent's pause flag is set, read after the action. */
  readonly paused: ReadonlySet<string>;
}

/**
 * `lab agents start|stop|pause|resume`: starts the agents of the lab's hosts that do not run
 * (resolving once each has written a heartbeat), stops them, or pauses and resumes them as
 * `nixship agent pause|resume` does. `hosts` empty: every host of the lab.
 */
export async function labAgents(
  labsDirPath: string,
  name: string,
  action: LabAgentAction,
  hosts: readonly string[],
  emit: (e: LabEvent) => void = () => {},
): Promise<LabAgentsResult> {
  const { state, layout, selected } = await actOnLabAgents(labsDirPath, name, action, hosts, emit);
  const paused = new Set<string>();
  for (const host of layout.hosts) {
    if (await isPaused(join(agentDir(host), "state"))) paused.add(host.name);
  }
  const acted = state.hosts
    .map((h) => h.name)
    .filter((h) => selected === undefined || selected.includes(h));
  return { state, hosts: acted, paused };
}

async function actOnLabAgents(
  labsDirPath: string,
  name: string,
  action: LabAgentAction,
  hosts: readonly string[],
  emit: (e: LabEvent) => void,
): Promise<{ state: LabState; layout: LabLayout; selected: string[] | undefined }> {
  requireRoot(`nixship lab agents ${action}`);
  const dir = join(labsDirPath, name);
  const state = await readLabState(dir);
  if (state === undefined) {
    throw new InputError("unknown-lab", `there is no lab '${name}'`, {
      hint: `start one with 'nixship lab up N --name ${name} --agents'`,
    });
  }
  if (state.agents !== true) {
    throw new InputError("lab-without-agents", `lab '${name}' was started without agents`, {
      hint: `'nixship lab down --name ${name}', then 'nixship lab up ${state.hosts.length} --name ${name} --agents'`,
    });
  }
  const selected = selectLabHosts(state, hosts);
  const layout = labLayout(labsDirPath, state.name, state.number, state.hosts.length);
  if (action === "stop")
    return { state: await stopAgents(layout, state, selected), layout, selected };
  if (action === "pause" || action === "resume") {
    for (const host of layout.hosts) {
      if (selected !== undefined && !selected.includes(host.name)) continue;
      await setPaused(join(agentDir(host), "state"), action === "pause");
    }
    return { state, layout, selected };
  }
  if (!(await isRunning(state))) {
    throw new OperationError("lab-host-down", `lab '${name}' has hosts that are not running`, {
      hint: `restart it: 'nixship lab down --name ${name}', then 'nixship lab up ${state.hosts.length} --name ${name} --agents'`,
    });
  }
  return { state: await startAgents(layout, state, emit, selected), layout, selected };
}

export interface LabHostStatus {
  readonly lab: string;
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  readonly pid: number;
  readonly running: boolean;
}

export async function labList(labsDirPath: string): Promise<LabHostStatus[]> {
  const rows: LabHostStatus[] = [];
  for (const state of await listLabStates(labsDirPath)) {
    for (const host of state.hosts) {
      const running = (await netnsPids(host.netns)).includes(host.pid);
      rows.push({ lab: state.name, ...host, running });
    }
  }
  return rows;
}

/**
 * The running host called `name`, in the lab called `lab`, else in whichever lab holds it;
 * with `down`, also one that is not running (a host that did not boot, for 'lab reboot').
 */
export async function findLabHost(
  labsDirPath: string,
  name: string,
  lab?: string,
  { down = false }: { down?: boolean } = {},
): Promise<LabHostStatus> {
  const hosts = (await labList(labsDirPath)).filter((h) => lab === undefined || h.lab === lab);
  const host = hosts.find((h) => h.name === name);
  if (host === undefined) {
    const where = lab === undefined ? "" : ` in lab '${lab}'`;
    throw new InputError("unknown-lab-host", `no lab host is called '${name}'${where}`, {
      hint: hosts.length
        ? `lab hosts: ${hosts.map((h) => h.name).join(", ")}`
        : "start some with 'nixship lab up N'",
    });
  }
  if (!host.running && !down) {
    throw new OperationError("lab-host-down", `lab host '${name}' is not running`, {
      hint: `restart its lab: 'nixship lab down --name ${host.lab}' then 'nixship lab up'`,
    });
  }
  return host;
}
