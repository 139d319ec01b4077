// The fleet file a lab writes for its hosts: ssh through the lab's ssh_config and known_hosts,
// a directory cache in the lab with its own signing key, an HTTP health check of the example
// service, and every host on one system (by default the example web-v1). With a file of the
// user's, the lab's hosts are merged into it and its other settings are kept.
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureCacheInfo } from "../cache/cache-info.js";
import type { FleetHost, SystemSpec } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatJson, upsertHosts, upsertHostsText } from "../fleet/fleet-json.js";
import { parseJsonText } from "../fleet/json-text.js";
import { formatPublicKey, formatSecretKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { isStorePath, parseStorePath } from "../nix/store-path.js";
import { openStore } from "../store/url.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { writeLabFlake } from "./lab-flake.js";
import { hostPublicKey, LAB_DEPLOY_USER } from "./lab-host.js";
import { LAB_CHANNEL, type LabKeys } from "./lab-types.js";
import type { LabLayout } from "./layout.js";

/** The example systems that come with nixship (examples/ in the package). */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../examples", import.meta.url));
export const EXAMPLE_SYSTEM = `path:${EXAMPLES_DIR}#web-v1`;

export function systemSpec(text: string): SystemSpec {
  return isStorePath(text)
    ? { kind: "store-path", path: parseStorePath(text).path }
    : { kind: "flake", installable: text };
}

export function labHosts(lab: LabLayout, system: SystemSpec): FleetHost[] {
  return lab.hosts.map((h) => ({
    name: h.name,
    tags: [lab.name, h.index % 2 === 1 ? "web" : "db"].filter((t, i, a) => a.indexOf(t) === i),
    address: h.address,
    delivery: "ssh",
    sshHost: h.name,
    system,
  }));
}

/**
 * The lab's hosts as agent hosts: they follow the channel LAB_CHANNEL (lab-agents.ts), and
 * name their host keys, which their secrets are encrypted to.
 */
async function agentHosts(lab: LabLayout, system: SystemSpec): Promise<FleetHost[]> {
  return Promise.all(
    labHosts(lab, system).map(async ({ name, tags, address }, i) => ({
      name,
      tags,
      address,
      delivery: "agent" as const,
      hostKey: await hostPublicKey(lab.hosts[i] as LabLayout["hosts"][number]),
      system,
    })),
  );
}

/** The public keys a lab's fleet file names, for the agents' configs. */
export type { LabKeys } from "./lab-types.js";

/**
 * Writes the lab's own fleet file, the same fleet in a flake (lab-flake.ts), and the keys it names (cache.sec, and with agents
 * release.sec): ssh hosts, or with `agents` agent hosts following the channel LAB_CHANNEL.
 */
export async function writeLabFleet(
  lab: LabLayout,
  system: SystemSpec,
  agents = false,
  /** The hosts are reached as the deploy user through sudo (`lab up --pinned`). */
  pinned = false,
): Promise<LabKeys> {
  const cache = formatPublicKey(publicKeyOf(await writeKey(lab.files.cacheKey, `${lab.name}-1`)));
  const release = agents
    ? formatPublicKey(publicKeyOf(await writeKey(lab.files.releaseKey, `${lab.name}-release-1`)))
    : undefined;
  const doc = upsertHosts(
    {
      cache: { url: `file://${join(lab.dir, "cache")}`, publicKeys: [cache] },
      ssh: {
        configFile: lab.files.sshConfig,
        knownHosts: lab.files.knownHosts,
        ...(pinned ? { user: LAB_DEPLOY_USER, sudo: true } : {}),
      },
      ...(release !== undefined
        ? { releases: { channel: LAB_CHANNEL, publicKeys: [release], signedReports: true } }
        : {}),
      policy: {
        health: { http: [{ url: "http://{address}/health", expectStatus: 200, timeout: 5 }] },
      },
    },
    agents ? await agentHosts(lab, system) : labHosts(lab, system),
  );
  parseFleetValue(doc, lab.files.fleet);
  // The lab's cache exists from the start: deploys require a cache, and never make one.
  const store = await openStore(`file://${join(lab.dir, "cache")}`);
  await ensureCacheInfo(store).finally(() => store.close());
  await writeFile(lab.files.fleet, formatJson(doc));
  await writeLabFlake(lab.files.fleetFlake, doc, EXAMPLES_DIR);
  return release !== undefined ? { cache, release } : { cache };
}

async function writeKey(file: string, name: string) {
  const key = generateSecretKey(`nixship-lab-${name}`);
  await writeFile(file, formatSecretKey(key), { mode: 0o600 });
  return key;
}

/**
 * Adds (or replaces) the lab's hosts in the user's fleet file, keeping everything else; a file
 * that does not exist is created as a copy of the lab's own (true: it was).
 */
export async function mergeIntoFleet(
  file: string,
  lab: LabLayout,
  system: SystemSpec,
): Promise<boolean> {
  const text = await readFleetToMerge(file);
  if (text === undefined) {
    const own = JSON.parse(await readFile(lab.files.fleet, "utf8")) as unknown;
    await writeFileAtomically(file, formatJson(own));
    return true;
  }
  // The user's own file: replaced whole or not at all, keeping its mode.
  const { mode } = await stat(file);
  await writeFileAtomically(
    file,
    upsertHostsText(text, labHosts(lab, system), file),
    mode & 0o7777,
  );
  return false;
}

/**
 * Refuses, before a lab is built, a fleet file to merge into that is no JSON object with an
 * object of hosts (what is added is checked with the rest when it is merged).
 */
export async function checkFleetToMerge(file: string): Promise<void> {
  const text = await readFleetToMerge(file);
  if (text !== undefined) upsertHosts(parseJsonText(text, file), []);
}

async function readFleetToMerge(file: string): Promise<string | undefined> {
  return readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
}
