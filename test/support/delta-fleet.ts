// What the delta tests share: the stand-in delta tool (a store path whose bin/zstd is Debian's,
// as nixpkgs' zstd would be), and a rebuild of a system that a fleet's hosts are pointed at,
// the fleet naming the tool.
import { readFile, writeFile } from "node:fs/promises";
import type { StorePath } from "../../src/nix/store-path.js";
import { runOk } from "../../support/cli.js";
import { type FreshSystems, ownSystems } from "./fresh-systems.js";

/** Builds the stand-in for nixpkgs' zstd in the machine's store. */
export async function buildDeltaTool(): Promise<StorePath> {
  const built = JSON.parse(
    await runOk("nix", [
      "build",
      "--impure",
      "--no-link",
      "--json",
      "--expr",
      'derivation { name = "zstd-from-debian"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin && cp /usr/bin/zstd $out/bin/zstd"]; PATH = "/usr/bin:/bin"; }',
    ]),
  ) as { outputs: { out: StorePath } }[];
  return built[0]?.outputs.out as StorePath;
}

/**
 * A new build of `system` (examples/system.nix's arguments: each build's store paths are its
 * own, with the same names), `hosts` of `fleetFile` pointed at it and `deltas.tool` set to
 * `tool`. The caller removes the returned flake.
 */
export async function rebuildFleet(
  fleetFile: string,
  hosts: readonly string[],
  tool: string,
  system: string,
): Promise<FreshSystems> {
  const flake = await ownSystems({ web: system });
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
    deltas?: { tool: string };
  };
  for (const host of hosts)
    (doc.hosts[host] as { system: string }).system = `path:${flake.dir}#web`;
  doc.deltas = { tool };
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
  return flake;
}
