// Which flake a fleet reference (`--fleet .#nixship`, `path:./ops#nixship`, `github:o/r#fleet`)
// names, fetched as the hosts' systems are (flake-source.ts), and how its hosts' systems are to
// be named for the build: relative to the flake's directory, as a fleet file names them.
import { join } from "node:path";
import type { FlakeFleet } from "../fleet/load-flake-fleet.js";
import { sourceReference } from "../util/source-reference.js";
import { parseFlakeInstallable } from "./build.js";
import { localFlakeRef } from "./flake-source.js";

/**
 * `text` is FLAKE#ATTR; a local flake is relative to `cwd`. `asked`: what named it, for errors
 * (default `--fleet TEXT`; the fleet looked for here when none was named says so).
 */
export async function flakeFleetSource(
  text: string,
  cwd: string,
  asked = `--fleet ${text}`,
): Promise<FlakeFleet> {
  const parsed = parseFlakeInstallable(text, cwd);
  const attr = parsed.attrPath.join(".");
  if (parsed.local === undefined) {
    return {
      flake: parsed.flake,
      attrPath: parsed.attrPath,
      installable: `${parsed.flake}#${attr}`,
      localDir: null,
      subdir: "",
      label: sourceReference(parsed.flake),
      name: `${sourceReference(parsed.flake)}#${attr}`,
      baseDir: cwd,
    };
  }
  const { dir, explicitPath } = parsed.local;
  const flake = await localFlakeRef(dir, explicitPath, {
    where: asked,
    base: `the current directory, ${cwd}`,
  });
  const subdir = flake.startsWith("git+file:")
    ? (new URL(flake).searchParams.get("dir") ?? "")
    : "";
  return {
    flake,
    attrPath: parsed.attrPath,
    // The build resolves it against the fleet's directory, the flake's own.
    installable: `${explicitPath ? "path:" : ""}.#${attr}`,
    localDir: dir,
    subdir,
    label: join(dir, "flake.nix"),
    name: `${dir}#${attr}`,
    baseDir: dir,
  };
}
