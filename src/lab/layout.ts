// Where a lab's parts live and what they are called: pure, so names and addresses can be
// tested without touching the network. A lab is numbered (1-254); number N owns the subnet
// 10.231.N.0/24, the bridge nxsN (10.231.N.1, the deployer's side) and, for host i (1-based),
// the network namespace nxsN-TAG-NAME, the veth nxsNvI on the bridge and the address
// 10.231.N.(i+1). A lab is owned by its directory: TAG is a hash of it, and the bridge's alias
// names it, so that labs of one name in two lab directories never take each other's parts.
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { InputError } from "../errors.js";

export const MAX_LAB_HOSTS = 200;
/** Labs are numbered 1..254, each owning one /24. */
export const MAX_LAB_NUMBER = 254;
const SUBNET_PREFIX = "10.231";

export interface LabHostLayout {
  readonly name: string;
  readonly index: number;
  readonly address: string;
  readonly netns: string;
  /** The veth end on the deployer's side, attached to the bridge. */
  readonly veth: string;
  /** The host's private directory: its /nix, its /etc/nix, its sshd files. */
  readonly dir: string;
}

export interface LabLayout {
  readonly name: string;
  readonly number: number;
  readonly dir: string;
  /** The lab directory's tag (labTag): in its namespaces' and its anchor's names. */
  readonly tag: string;
  readonly bridge: string;
  /** The deployer's address on the bridge: hosts reach the deployer (e.g. a cache) here. */
  readonly gateway: string;
  readonly prefixLength: 24;
  readonly hosts: readonly LabHostLayout[];
  readonly files: {
    readonly state: string;
    readonly clientKey: string;
    readonly knownHosts: string;
    readonly sshConfig: string;
    readonly fleet: string;
    /** The same fleet in a flake of its own directory (lab-flake.ts). */
    readonly fleetFlake: string;
    readonly cacheKey: string;
    /** With agents: the key that signs the lab's releases. */
    readonly releaseKey: string;
  };
}

const LAB_NAME = /^[a-z][a-z0-9-]{0,15}$/;

/** Throws unless `name` can prefix host names (lab1, lab2, ...) and name a lab directory. */
export function validateLabName(name: string): string {
  if (!LAB_NAME.test(name) || name.endsWith("-")) {
    throw new InputError(
      "bad-lab-name",
      `lab name '${name}' must start with a letter and hold 1-16 of a-z, 0-9 and '-'`,
      { hint: "for example: --name lab (hosts lab1, lab2, ...) or --name web" },
    );
  }
  return name;
}

export function validateHostCount(count: number): number {
  if (!Number.isInteger(count) || count < 1 || count > MAX_LAB_HOSTS) {
    throw new InputError(
      "bad-host-count",
      `a lab has 1 to ${MAX_LAB_HOSTS} hosts, got ${String(count)}`,
    );
  }
  return count;
}

/** The deployer's address on lab `number`'s bridge: where its hosts reach this machine. */
export function labGateway(number: number): string {
  return `${SUBNET_PREFIX}.${number}.1`;
}

export function labLayout(
  labsDir: string,
  name: string,
  number: number,
  hostCount: number,
): LabLayout {
  validateLabName(name);
  validateHostCount(hostCount);
  if (!Number.isInteger(number) || number < 1 || number > MAX_LAB_NUMBER) {
    throw new InputError("bad-lab-number", `lab numbers run from 1 to ${MAX_LAB_NUMBER}`);
  }
  const dir = join(labsDir, name);
  const tag = labTag(dir);
  const bridge = `nxs${number}`;
  const hosts = Array.from({ length: hostCount }, (_, i): LabHostLayout => {
    const hostName = `${name}${i + 1}`;
    return {
      name: hostName,
      index: i + 1,
      address: `${SUBNET_PREFIX}.${number}.${i + 2}`,
      netns: `${bridge}-${tag}-${hostName}`,
      veth: `${bridge}v${i + 1}`,
      dir: join(dir, "hosts", hostName),
    };
  });
  return {
    name,
    number,
    dir,
    tag,
    bridge,
    gateway: labGateway(number),
    prefixLength: 24,
    hosts,
    files: {
      state: join(dir, "lab.json"),
      clientKey: join(dir, "id_ed25519"),
      knownHosts: join(dir, "known_hosts"),
      sshConfig: join(dir, "ssh_config"),
      fleet: join(dir, "nixship.json"),
      fleetFlake: join(dir, "fleet", "flake.nix"),
      cacheKey: join(dir, "cache.sec"),
      releaseKey: join(dir, "release.sec"),
    },
  };
}

/** The lowest lab number not in `used`. */
export function freeLabNumber(used: ReadonlySet<number>): number {
  for (let n = 1; n <= MAX_LAB_NUMBER; n++) if (!used.has(n)) return n;
  throw new InputError("no-free-lab", `all ${MAX_LAB_NUMBER} lab numbers are in use`, {
    hint: "take some labs down with 'nixship lab down --name NAME' or 'nixship lab down --all'",
  });
}

/**
 * A lab directory's tag: 8 hex digits of the SHA-256 of its absolute path. Network namespace
 * names are not bound by the 15 characters of an interface name, but they are global to the
 * machine: the tag keeps each lab directory's apart.
 */
export function labTag(labDir: string): string {
  return createHash("sha256").update(resolve(labDir)).digest("hex").slice(0, 8);
}

/** The alias a lab's bridge carries (`ip link set … alias`): which lab directory owns it. */
export function bridgeOwner(labDir: string): string {
  return `nixship-lab ${resolve(labDir)}`;
}

/** A lab host's network namespace: its lab's number and tag, and the host's name. */
export const LAB_NETNS = /^nxs(\d{1,3})-([0-9a-f]{8})-([a-z][a-z0-9-]*\d)$/;

/** Whether `host` is a host of lab `lab`: the lab's name and the host's index. */
export function isHostOf(lab: string, host: string): boolean {
  return host.startsWith(lab) && /^[1-9]\d*$/.test(host.slice(lab.length));
}
export const LAB_LINK = /^nxs\d{1,3}(?:v\d{1,3})?$/;
