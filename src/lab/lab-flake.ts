// The lab's fleet written in Nix: a flake beside the lab's fleet file (DIR/fleet/flake.nix) whose
// `nixship` output is the same fleet, each host's system an attribute of the example systems'
// flake, so a user tries the fleet in the flake by editing one line and deploying.
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { NEW_CLI } from "../cache/local-nix.js";
import type { JsonObject } from "../fleet/fleet-json.js";
import { formatNix, type NixValue, nixExpression, nixString } from "../fleet/nix-text.js";
import { runCommand } from "../util/run.js";

/** The Nix system of this machine, which the example systems are built for. */
export function nixSystemOf(arch: string = process.arch): string {
  if (arch === "x64") return "x86_64-linux";
  if (arch === "arm64") return "aarch64-linux";
  throw new Error(`the lab runs on x86_64 and aarch64 Linux, not ${arch}`);
}

/**
 * The flake's text for the fleet `doc` (the lab's fleet file): a host whose system is one of
 * the example systems (`path:EXAMPLES#NAME`) names it as `systems.NAME`; any other system is
 * written as the fleet file has it.
 */
export function labFleetFlake(doc: JsonObject, examplesDir: string, nixSystem: string): string {
  const prefix = `path:${examplesDir}#`;
  const hosts = (doc.hosts ?? {}) as Record<string, JsonObject>;
  const nixHosts: Record<string, NixValue> = {};
  for (const [name, host] of Object.entries(hosts)) {
    const system = host.system;
    const example =
      typeof system === "string" && system.startsWith(prefix) ? system.slice(prefix.length) : "";
    nixHosts[name] = {
      ...(host as Record<string, NixValue>),
      ...(/^[A-Za-z0-9_-]+$/.test(example) ? { system: nixExpression(`systems.${example}`) } : {}),
    };
  }
  const fleet = formatNix({ ...(doc as Record<string, NixValue>), hosts: nixHosts }, "      ");
  return `# The lab's fleet in Nix: the same fleet as ../nixship.json, written by 'nixship lab up'.
# Each host's system is one of nixship's example systems (${examplesDir}/flake.nix):
# change one, then 'nixship deploy --fleet path:$PWD#nixship --key ../cache.sec'.
{
  inputs.examples.url = ${nixString(`path:${examplesDir}`)};

  outputs = { self, examples }:
    let
      systems = examples.packages.${nixSystem};
    in {
      nixship = ${fleet};
    };
}
`;
}

/** Seconds `nix flake lock` may take: it copies the example systems' flake into the store. */
const LOCK_TIMEOUT = 120;

/**
 * Writes the lab's flake at `file`, in a directory of its own (a flake copies the whole of its
 * directory into the store, and the lab's holds keys), and locks it: nixship evaluates a fleet
 * with its lock file as it is.
 */
export async function writeLabFlake(
  file: string,
  doc: JsonObject,
  examplesDir: string,
): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  await writeFile(file, labFleetFlake(doc, examplesDir, nixSystemOf()));
  await runCommand("nix", [...NEW_CLI, "flake", "lock", `path:${dir}`], {
    purpose: `lock the lab's flake ${file}`,
    errorCodes: { missing: "nix-missing", failed: "lab-flake-lock" },
    signal: AbortSignal.timeout(LOCK_TIMEOUT * 1000),
  });
}
