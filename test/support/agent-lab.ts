// A lab whose hosts run real pull agents, started as a user would: `nixship lab up N --agents`
// (each host its own agent config, state directory and host name; nixship seen from inside
// the hosts), `nixship lab agents stop|start|pause|resume`, and `nixship deploy --via agent`.
// Shared by the agent tests; each uses its own lab name.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { ParsedRelease, Release } from "../../src/release/release.js";
import { highestListed, readChannel, readRelease } from "../../src/release/release-store.js";
import { loadRelease } from "../../src/release/shard-store.js";
import type { StatusRecord } from "../../src/status/status.js";
import { readStatus } from "../../src/status/status-store.js";
import type { ObjectStore } from "../../src/store/object-store.js";
import { openStore } from "../../src/store/url.js";
import { type CliRun, nixship } from "../../support/cli.js";
import { EXAMPLES_DIR } from "./example-systems.js";
import { servedBy } from "./lab-deploy.js";

/** The channel `lab up --agents` makes the hosts follow. */
export const CHANNEL = "lab";

export interface AgentLab {
  readonly name: string;
  readonly dir: string;
  readonly hosts: readonly { readonly name: string; readonly address: string }[];
  readonly fleetFile: string;
  readonly cacheKeyFile: string;
  readonly releaseKeyFile: string;
  readonly storeUrl: string;
  /** The environment that points `nixship lab` at the test's labs. */
  readonly env: NodeJS.ProcessEnv;
  /** Removes the lab and its directory. */
  readonly down: () => Promise<void>;
}

export interface AgentLabOptions {
  readonly hosts: number;
  /** Merged into the fleet file's `releases` and `policy`. */
  readonly releases?: Record<string, unknown>;
  readonly policy?: Record<string, unknown>;
  /** Merged into every agent's config, before the agents are started again. */
  readonly agentConfig?: Record<string, unknown>;
  /** More arguments of `lab up` (e.g. `--nix current`). */
  readonly labUpArgs?: readonly string[];
}

/** `lab up N --agents`, then the test's settings, with every agent running them. */
export async function startAgentLab(name: string, options: AgentLabOptions): Promise<AgentLab> {
  const work = await mkdtemp(join(tmpdir(), `nixship-agent-lab-${name}-`));
  const env = { NIXSHIP_LAB_DIR: join(work, "labs") };
  const up = await nixship(
    [
      "lab",
      "up",
      String(options.hosts),
      "--name",
      name,
      "--agents",
      "--json",
      ...(options.labUpArgs ?? []),
    ],
    {
      env,
    },
  );
  expect(up.code, up.stderr).toBe(0);
  const state = JSON.parse(up.stdout) as {
    dir: string;
    hosts: { name: string; address: string; agentPid: number }[];
    files: { fleet: string; cacheKey: string; releaseKey: string };
  };
  for (const host of state.hosts) expect(host.agentPid).toBeGreaterThan(0);
  const lab: AgentLab = {
    name,
    dir: state.dir,
    hosts: state.hosts.map(({ name: host, address }) => ({ name: host, address })),
    fleetFile: state.files.fleet,
    cacheKeyFile: state.files.cacheKey,
    releaseKeyFile: state.files.releaseKey,
    storeUrl: `file://${join(state.dir, "cache")}`,
    env,
    down: async () => {
      await nixship(["lab", "down", "--name", name], { env });
      await rm(work, { recursive: true, force: true });
    },
  };
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as Record<string, unknown>;
  doc.releases = { ...(doc.releases as object), ...options.releases };
  doc.policy = { ...(doc.policy as object), ...options.policy };
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  if (options.agentConfig !== undefined) {
    for (const host of lab.hosts) {
      const file = agentConfigFile(lab, host.name);
      const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
      await writeFile(file, JSON.stringify({ ...config, ...options.agentConfig }, null, 2));
    }
    await labAgents(lab, "stop");
    await labAgents(lab, "start");
  }
  return lab;
}

export function agentConfigFile(lab: AgentLab, host: string): string {
  return join(lab.dir, "hosts", host, "agent", "config.json");
}

/** `nixship lab agents ACTION [HOST...]`, which must succeed. */
export async function labAgents(lab: AgentLab, action: string, ...hosts: string[]) {
  const r = await nixship(["lab", "agents", action, "--name", lab.name, ...hosts], {
    env: lab.env,
  });
  expect(r.code, `lab agents ${action}: ${r.stderr}`).toBe(0);
}

/** The pid of the host's agent, from the lab's state. */
export async function agentPid(lab: AgentLab, host: string): Promise<number> {
  const state = JSON.parse(await readFile(join(lab.dir, "lab.json"), "utf8")) as {
    hosts: { name: string; agentPid?: number }[];
  };
  const pid = state.hosts.find((h) => h.name === host)?.agentPid;
  if (pid === undefined) throw new Error(`${host} runs no agent`);
  return pid;
}

/** The host's agent log (for failure messages). */
export function agentLog(lab: AgentLab, host: string): Promise<string> {
  return readFile(join(lab.dir, "hosts", host, "agent", "agent.log"), "utf8").catch(() => "");
}

/** Sets the fleet file's system of `hosts` (default: every host) to an example system. */
export async function setSystems(
  lab: AgentLab,
  system: string,
  hosts?: readonly string[],
  flake: string = EXAMPLES_DIR,
) {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const [name, h] of Object.entries(doc.hosts)) {
    if (hosts === undefined || hosts.includes(name)) h.system = `path:${flake}#${system}`;
  }
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

export function deployViaAgent(lab: AgentLab, ...extra: string[]): Promise<CliRun> {
  return nixship(deployViaAgentArgs(lab, ...extra));
}

/** The arguments of `nixship deploy --via agent` to the lab's hosts. */
export function deployViaAgentArgs(lab: AgentLab, ...extra: string[]): string[] {
  return [
    "deploy",
    "--fleet",
    lab.fleetFile,
    "--via",
    "agent",
    "--key",
    lab.cacheKeyFile,
    "--release-key",
    lab.releaseKeyFile,
    "--json",
    ...extra,
  ];
}

/** The name of the example system the host serves, or "(nothing)". */
export const served: (lab: AgentLab, host: string) => Promise<string> = servedBy;

export async function withStore<T>(lab: AgentLab, use: (store: ObjectStore) => Promise<T>) {
  const store = await openStore(lab.storeUrl);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

export function record(lab: AgentLab, host: string): Promise<StatusRecord | undefined> {
  return withStore(lab, (store) => readStatus(store, host));
}

/** Waits (bounded) until `check` holds for the host's status record. */
export async function waitFor(
  lab: AgentLab,
  host: string,
  check: (r: StatusRecord) => boolean,
  seconds = 60,
): Promise<StatusRecord> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const r = await record(lab, host);
    if (r !== undefined && check(r)) return r;
    if (Date.now() > deadline) {
      throw new Error(
        `${host}: status never matched; last: ${JSON.stringify(r)}\nagent log:\n${(await agentLog(lab, host)).slice(-5000)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The release the channel points at (not verified). */
export function channelRelease(lab: AgentLab): Promise<ParsedRelease> {
  return withStore(lab, async (store) => {
    const got = await readChannel(store, CHANNEL);
    if (got.status !== "found") throw new Error("no channel");
    return loadRelease(store, got.bytes, "channel");
  });
}

/** Every release file of the channel, oldest first. */
export function allReleases(lab: AgentLab): Promise<Release[]> {
  return withStore(lab, async (store) => {
    const releases: Release[] = [];
    for (let seq = 1; seq <= (await highestListed(store, CHANNEL)); seq++) {
      const read = await readRelease(store, CHANNEL, seq);
      if (read.status === "found") {
        releases.push((await loadRelease(store, read.bytes, `release ${seq}`)).release);
      }
    }
    return releases;
  });
}

export { summaryOf } from "./lab-deploy.js";
