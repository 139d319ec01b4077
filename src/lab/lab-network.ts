// The lab's network, through iproute2: a bridge on the deployer's side, and per host a network
// namespace joined to it by a veth pair. Hosts get no default route: they can reach the
// deployer and each other on the lab's /24, and nothing else.
import { runCommand } from "../util/run.js";
import { bridgeOwner, type LabHostLayout, type LabLayout } from "./layout.js";

const ip = (args: readonly string[], purpose: string) => runCommand("ip", args, { purpose });

/**
 * Creates the lab's bridge, which claims its number (`ip link add` fails when it exists), with
 * an alias naming the lab directory that owns it; a bridge half made is deleted again.
 */
export async function createBridge(lab: LabLayout): Promise<void> {
  await ip(["link", "add", lab.bridge, "type", "bridge"], `create the lab bridge ${lab.bridge}`);
  try {
    await ip(["link", "set", lab.bridge, "alias", bridgeOwner(lab.dir)], "name the lab bridge");
    await ip(
      ["addr", "add", `${lab.gateway}/${lab.prefixLength}`, "dev", lab.bridge],
      "address the lab bridge",
    );
    await ip(["link", "set", lab.bridge, "up"], "bring the lab bridge up");
  } catch (err) {
    await deleteLink(lab.bridge);
    throw err;
  }
}

export async function createHostNetwork(lab: LabLayout, host: LabHostLayout): Promise<void> {
  await ip(["netns", "add", host.netns], `create the network namespace of ${host.name}`);
  await ip(
    ["link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns],
    `create the network link of ${host.name}`,
  );
  await ip(["link", "set", host.veth, "master", lab.bridge, "up"], `attach ${host.name}`);
  const inside = (args: readonly string[]) =>
    ip(["-n", host.netns, ...args], `configure the network of ${host.name}`);
  await inside(["addr", "add", `${host.address}/${lab.prefixLength}`, "dev", "eth0"]);
  await inside(["link", "set", "eth0", "up"]);
  await inside(["link", "set", "lo", "up"]);
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await ip(["netns", "list"], "list network namespaces");
  // Lines look like "name" or "name (id: 3)".
  return stdout
    .split("\n")
    .map((line) => line.trim().split(" ")[0] ?? "")
    .filter((name) => name !== "");
}

/** A network link of the machine, with its alias (a lab's bridge: the directory owning it). */
export interface Link {
  readonly name: string;
  readonly alias?: string;
}

export async function listLinks(): Promise<Link[]> {
  const { stdout } = await ip(["-j", "link", "show"], "list network links");
  const links = JSON.parse(stdout) as { ifname?: string; ifalias?: string }[];
  return links.flatMap((l) =>
    l.ifname === undefined
      ? []
      : [{ name: l.ifname, ...(l.ifalias === undefined ? {} : { alias: l.ifalias }) }],
  );
}

/** Pids of the processes inside a network namespace (none if it is gone). */
export async function netnsPids(netns: string): Promise<number[]> {
  const { stdout, code } = await runCommand("ip", ["netns", "pids", netns], {
    okCodes: [0, 1, 255],
    purpose: `list the processes of ${netns}`,
  });
  if (code !== 0) return [];
  return stdout
    .split("\n")
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

export async function deleteNetns(netns: string): Promise<void> {
  await runCommand("ip", ["netns", "delete", netns], {
    okCodes: [0, 1, 255],
    purpose: `delete ${netns}`,
  });
}

export async function deleteLink(name: string): Promise<void> {
  await runCommand("ip", ["link", "delete", name], {
    okCodes: [0, 1, 2, 255],
    purpose: `delete ${name}`,
  });
}
