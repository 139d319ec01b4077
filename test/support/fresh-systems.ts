// Example systems no store has yet, for tests that build elsewhere: a flake in a directory of
// its own whose systems' versions hold a fresh nonce, so each run's derivations are new.
import { randomUUID } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runOk } from "../../support/cli.js";
import { EXAMPLES_DIR } from "./example-systems.js";

export interface FreshSystems {
  /** The flake's directory: `path:DIR#NAME` names a system. */
  readonly dir: string;
  /** Removes the flake. */
  readonly remove: () => Promise<void>;
}

/** A flake of examples/system.nix systems named `names`, each with a version of its own. */
export async function freshSystems(names: readonly string[]): Promise<FreshSystems> {
  const nonce = randomUUID().slice(0, 8);
  const dir = await mkdtemp(join(tmpdir(), "nixship-fresh-systems-"));
  await cp(join(EXAMPLES_DIR, "system.nix"), join(dir, "system.nix"));
  await cp(join(EXAMPLES_DIR, "web"), join(dir, "web"), { recursive: true });
  const packages = names.map(
    (name) =>
      `${name} = import ./system.nix { system = "x86_64-linux"; name = "${name}"; version = "${name}-${nonce}"; };`,
  );
  await writeFile(
    join(dir, "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux = { ${packages.join(" ")} }; }; }\n`,
  );
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The fields of a `pinned` argument that name the files ownSystems puts in its flake. */
export const PINNED_FILES = "script = ./activate.sh; text = import ./nixship-activate.nix;";

/**
 * A flake of examples/system.nix systems, `name` → the Nix text of its arguments (beside
 * `system`), in which every store path is new to this run (system.nix's `nonce`), with the
 * names the examples give it: for tests that delete paths from the machine's store, which
 * another test or checkout may hold alive under the examples' own paths.
 */
export async function ownSystems(args: Readonly<Record<string, string>>): Promise<FreshSystems> {
  const nonce = randomUUID();
  const dir = await mkdtemp(join(tmpdir(), "nixship-own-systems-"));
  await cp(join(EXAMPLES_DIR, "system.nix"), join(dir, "system.nix"));
  await cp(join(EXAMPLES_DIR, "web"), join(dir, "web"), { recursive: true });
  // What a `pinned` argument takes (nixosModules.host's text and the built activate.sh), inside
  // the flake, which a pure evaluation may read: `pinned = { ...; ${PINNED_FILES} };`.
  await cp(join(EXAMPLES_DIR, "..", "dist", "host", "activate.sh"), join(dir, "activate.sh"));
  await cp(
    join(EXAMPLES_DIR, "..", "packaging", "nixos", "nixship-activate.nix"),
    join(dir, "nixship-activate.nix"),
  );
  const packages = Object.entries(args).map(
    ([name, text]) =>
      `${name} = import ./system.nix ({ system = "x86_64-linux"; nonce = "${nonce}"; } // { ${text} });`,
  );
  await writeFile(
    join(dir, "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux = { ${packages.join(" ")} }; }; }\n`,
  );
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Points `host` of a fleet file at a fresh system and sets (or removes) its `build` section. */
export async function setBuildFleet(
  fleetFile: string,
  host: string,
  system: string,
  build: object | undefined,
): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
    build?: object;
  };
  const entry = doc.hosts[host];
  if (entry === undefined) throw new Error(`no host ${host} in ${fleetFile}`);
  entry.system = system;
  if (build === undefined) delete doc.build;
  else doc.build = build;
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

/** The derivation of system `name` of a flake of example systems, instantiated here. */
export async function derivationOf(dir: string, name: string): Promise<string> {
  const attr = `path:${dir}#packages.x86_64-linux.${name}.drvPath`;
  return (
    await runOk("nix", [
      "--extra-experimental-features",
      "nix-command flakes",
      "eval",
      "--raw",
      attr,
    ])
  ).trim();
}
