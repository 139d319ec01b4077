// A fleet read from one directory, to be written into another: the paths in it that are
// relative to its file (the files of fleet-files.ts, local flake references such as `.#web`)
// are rewritten to name the same files from the new directory, and stay relative.
import { isAbsolute, relative, resolve } from "node:path";
import type { Fleet, FleetHost, SystemSpec } from "./fleet.js";
import { mapFleetFiles } from "./fleet-files.js";

export function relocateFleet(fleet: Fleet, fromDir: string, toDir: string): Fleet {
  if (resolve(fromDir) === resolve(toDir)) return fleet;
  const moved = mapFleetFiles(fleet, (file) =>
    isAbsolute(file) ? file : relativePath(resolve(fromDir, file), toDir),
  );
  return {
    ...moved,
    hosts: moved.hosts.map(
      (host): FleetHost => ({ ...host, system: relocateSystem(host.system, fromDir, toDir) }),
    ),
  };
}

function relocateSystem(system: SystemSpec, fromDir: string, toDir: string): SystemSpec {
  if (system.kind !== "flake") return system;
  return { kind: "flake", installable: relocateInstallable(system.installable, fromDir, toDir) };
}

/**
 * A flake installable named from `fromDir`, named from `toDir`: `.#web`, `./x#web`, `../x#web`
 * and their `path:` forms; any other reference (a store path, `github:`) is left alone.
 */
export function relocateInstallable(installable: string, fromDir: string, toDir: string): string {
  const hash = installable.lastIndexOf("#");
  if (hash < 0 || resolve(fromDir) === resolve(toDir)) return installable;
  const flake = installable.slice(0, hash);
  const scheme = flake.startsWith("path:") ? "path:" : "";
  const local = flake.slice(scheme.length);
  if (!(local === "." || local.startsWith("./") || local.startsWith("../"))) return installable;
  const moved = relativePath(resolve(fromDir, local), toDir);
  return `${scheme}${moved}${installable.slice(hash)}`;
}

/** `target` from `dir`, written so that the flake parser reads it as local: `.`, `./x`, `../x`. */
function relativePath(target: string, dir: string): string {
  const rel = relative(dir, target);
  if (rel === "") return ".";
  if (rel === ".." || rel.startsWith("../")) return rel === ".." ? "./.." : rel;
  return `./${rel}`;
}
