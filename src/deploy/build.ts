// `nixship build`: the systems of the selected hosts, evaluated once and built once on the
// deployer. Hosts with the same system share one result.
import { realpath } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import {
  evaluateAndBuild,
  type FlakeOutput,
  type NixOptions,
  validPaths,
} from "../cache/local-nix.js";
import { OperationError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import { formatSystemSpec } from "../fleet/fleet.js";
import type { StorePath } from "../nix/store-path.js";
import type { BuiltSystem } from "./events.js";

export interface BuildResult {
  readonly systems: readonly BuiltSystem[];
  /** Each host's desired system. */
  readonly byHost: ReadonlyMap<string, StorePath>;
}

/**
 * `path:./x#a`, `./x#a` and `.#a` name directories relative to the fleet file; they become
 * absolute `path:` references so the result does not depend on the working directory.
 */
export function parseFlakeInstallable(installable: string, baseDir: string): FlakeOutput {
  const hash = installable.lastIndexOf("#");
  let flake = installable.slice(0, hash);
  const attr = installable.slice(hash + 1);
  const local = flake.startsWith("path:") ? flake.slice(5) : flake;
  if (local === "." || local.startsWith("./") || local.startsWith("../") || isAbsolute(local)) {
    flake = `path:${isAbsolute(local) ? local : resolve(baseDir, local)}`;
  }
  return { flake, attrPath: attr.split(".") };
}

export async function buildSystems(
  hosts: readonly FleetHost[],
  baseDir: string,
  nix: NixOptions = {},
): Promise<BuildResult> {
  const specs = new Map<string, string[]>();
  for (const host of hosts) {
    const spec = formatSystemSpec(host.system);
    specs.set(spec, [...(specs.get(spec) ?? []), host.name]);
  }
  const flakeSpecs = [...specs.keys()].filter((s) => !s.startsWith("/"));
  const outputs = await Promise.all(
    flakeSpecs.map(async (s) => {
      const output = parseFlakeInstallable(s, baseDir);
      // Nix refuses a path: flake reached through a symlink ("escapes from ..."): name its
      // real directory.
      if (!output.flake.startsWith("path:/")) return output;
      const real = await realpath(output.flake.slice(5)).catch(() => output.flake.slice(5));
      return { ...output, flake: `path:${real}` };
    }),
  );
  const built = await evaluateAndBuild(outputs, nix);
  const pathOf = new Map<string, StorePath>(flakeSpecs.map((s, i) => [s, built[i] as StorePath]));
  const given = [...specs.keys()].filter((s) => s.startsWith("/")) as StorePath[];
  const valid = await validPaths(given, nix);
  for (const path of given) {
    if (!valid.has(path)) {
      throw new OperationError(
        "system-missing",
        `${path} (the system of ${specs.get(path)?.join(", ")}) is not in the local Nix store`,
        {
          hint: "build or copy it here first; nixship pushes systems from the deployer's store",
        },
      );
    }
    pathOf.set(path, path);
  }
  const systems = [...specs].map(([spec, names]) => ({
    spec,
    path: pathOf.get(spec) as StorePath,
    hosts: names,
  }));
  const byHost = new Map<string, StorePath>();
  for (const s of systems) for (const h of s.hosts) byHost.set(h, s.path);
  return { systems, byHost };
}
