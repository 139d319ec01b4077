// Taking a lab down: its processes, namespaces, links, ssh connections and files, from its state
// or from what is left of it after a crash; only what carries this lab directory's marks.
import { readdir, readFile, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { terminateMasters } from "../delivery/ssh-mux.js";
import { controlPrefixFor } from "../delivery/ssh-transport.js";
import { mapLimit } from "../util/pool.js";
import { legacyAnchorPids, listAnchors, stopAnchor } from "./lab-anchor.js";
import { HOSTS_AT_ONCE, stopProcesses } from "./lab-host.js";
import { deleteLink, deleteNetns, listLinks, listNetns, netnsPids } from "./lab-network.js";
import { type LabState, listLabStates, readLabState } from "./lab-state.js";
import { bridgeOwner, isHostOf, LAB_LINK, LAB_NETNS, labTag } from "./layout.js";
import { requireRoot } from "./require-root.js";
import { LAB_CONTROL_PREFIX } from "./ssh-files.js";

export interface LabDownResult {
  readonly labs: readonly string[];
}

/**
 * Removes a lab: processes, namespaces, links, files. Idempotent, and works from leftovers.
 * Only the lab of this lab directory: its namespaces and anchor carry the directory's tag, its
 * bridge an alias naming the directory; a lab of the same name elsewhere is not touched.
 */
export async function labDown(labsDirPath: string, name: string): Promise<LabDownResult> {
  requireRoot("nixship lab down");
  const dir = join(labsDirPath, name);
  const tag = labTag(dir);
  const state = await readLabState(dir).catch(() => undefined);
  const numbers = new Set<number>(state ? [state.number] : []);
  // Without a readable state, the namespaces' names, the bridges' aliases and the anchor's
  // name still say which lab number it was.
  for (const ns of await listNetns()) {
    const m = LAB_NETNS.exec(ns);
    if (m && m[2] === tag && isHostOf(name, m[3] ?? "")) numbers.add(Number(m[1]));
  }
  for (const link of await listLinks()) {
    const m = /^nxs(\d+)$/.exec(link.name);
    if (m && link.alias === bridgeOwner(dir)) numbers.add(Number(m[1]));
  }
  for (const anchor of await listAnchors()) {
    if (anchor.tag === tag && anchor.name === name) numbers.add(anchor.number);
  }
  if (state) await tearDownLegacy(state);
  for (const number of numbers) await tearDown(name, number, dir);
  await rm(dir, { recursive: true, force: true });
  return { labs: numbers.size > 0 || state ? [name] : [] };
}

/**
 * A lab brought up before labs were owned by their directory: namespaces nxsN-HOST,
 * anchor nixship-lab-anchor-N-NAME, a bridge without an alias. Its state names those
 * namespaces; what it names goes while they are still there (else N may be another lab's).
 */
async function tearDownLegacy(state: LabState): Promise<void> {
  const present = new Set(await listNetns());
  const ours = state.hosts
    .filter((h) => h.netns === `nxs${state.number}-${h.name}` && present.has(h.netns))
    .map((h) => h.netns);
  if (ours.length === 0) return;
  await stopProcesses(await legacyAnchorPids(state.name, state.number));
  for (const ns of ours) await removeHost(ns);
  const links = await listLinks();
  const bridge = links.find((l) => l.name === `nxs${state.number}`);
  if (bridge !== undefined && bridge.alias === undefined) {
    for (const link of links) {
      if (new RegExp(`^nxs${state.number}v\\d+$`).test(link.name)) await deleteLink(link.name);
    }
    await deleteLink(bridge.name);
  }
}

/**
 * Removes every lab of this lab directory, including leftovers that no state file names (their
 * names and aliases say the directory). Labs of other lab directories are not touched.
 */
export async function labDownAll(labsDirPath: string): Promise<LabDownResult> {
  requireRoot("nixship lab down --all");
  const names = new Set((await listLabStates(labsDirPath)).map((s) => s.name));
  // A host's name is its lab's and a number: the lab is the prefix whose tag is the netns's.
  const ownLab = (tag: string, host: string): string | undefined => {
    for (let end = host.length - 1; end > 0 && /^\d+$/.test(host.slice(end)); end--) {
      const lab = host.slice(0, end);
      if (isHostOf(lab, host) && labTag(join(labsDirPath, lab)) === tag) return lab;
    }
    return undefined;
  };
  for (const ns of await listNetns()) {
    const m = LAB_NETNS.exec(ns);
    const lab = m && ownLab(m[2] ?? "", m[3] ?? "");
    if (lab) names.add(lab);
  }
  for (const link of await listLinks()) {
    const owner = link.alias?.startsWith("nixship-lab ") ? link.alias.slice(12) : undefined;
    if (
      LAB_LINK.test(link.name) &&
      owner !== undefined &&
      dirname(owner) === resolve(labsDirPath)
    ) {
      names.add(basename(owner));
    }
  }
  for (const anchor of await listAnchors()) {
    if (labTag(join(labsDirPath, anchor.name)) === anchor.tag) names.add(anchor.name);
  }
  for (const name of [...names].sort()) await labDown(labsDirPath, name);
  await rm(labsDirPath, { recursive: true, force: true });
  return { labs: [...names].sort() };
}

/** A host is gone once every process in its network namespace is stopped and the netns deleted. */
async function removeHost(netns: string): Promise<void> {
  await stopProcesses(await netnsPids(netns));
  await deleteNetns(netns);
}

/** Removes lab `name` of directory `dir` under `number`: what of it carries the dir's marks. */
export async function tearDown(name: string, number: number, dir: string): Promise<void> {
  const tag = labTag(dir);
  await closeSharedConnections(dir);
  await stopAnchor({ name, number, tag });
  const hosts = (await listNetns()).filter((ns) => {
    const m = LAB_NETNS.exec(ns);
    return m !== null && Number(m[1]) === number && m[2] === tag && isHostOf(name, m[3] ?? "");
  });
  await mapLimit(hosts, HOSTS_AT_ONCE, removeHost);
  // The bridge and the veths on it, when the bridge is this directory's (a stale state's number
  // may since be another lab's). A veth goes with its host's namespace anyway.
  const links = await listLinks();
  const bridge = links.find((l) => l.name === `nxs${number}`);
  if (bridge?.alias === bridgeOwner(dir)) {
    for (const link of links) {
      if (new RegExp(`^nxs${number}v\\d+$`).test(link.name)) await deleteLink(link.name);
    }
    await deleteLink(bridge.name);
  }
  await rm(dir, { recursive: true, force: true });
}

/**
 * Ends the ssh processes on this side that hold connections to the lab's hosts: the shared
 * connections (ControlMaster) of the lab's ssh_config, and those a deployer opened with the
 * lab's ssh_config and known_hosts. A master renames itself "ssh: SOCKET [mux]", so they are
 * found by their control socket's directory.
 */
async function closeSharedConnections(dir: string): Promise<void> {
  const config = join(dir, "ssh_config");
  await terminateMasters([join(dir, LAB_CONTROL_PREFIX)]);
  // A runtime directory nixship refuses to use holds no connection of ours to stop.
  let deployer: string[] = [];
  try {
    deployer = [controlPrefixFor(config, join(dir, "known_hosts"))];
  } catch {}
  await stopProcesses(await sshProcessesMentioning([`${dir}/`, ...deployer]));
}

/** Pids of ssh processes whose command line mentions one of `needles`. */
export async function sshProcessesMentioning(needles: readonly string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).replaceAll(
      "\0",
      " ",
    );
    if (/^(\S*\/)?ssh[: ]/.test(cmdline) && needles.some((n) => cmdline.includes(n))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}
