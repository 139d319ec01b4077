// A lab of pinned hosts (`lab up --pinned`, docs/pinned-hosts.md): each host installed, as an
// installer would (the closure copied into its store, its system profile set, then its first
// boot), with the example system web-v1 built with `pinned`: nixship-activate, pinning the
// lab's cache key and one substituter at a fixed address of the lab (which `deploy
// --serve-cache` serves), as nixosModules.host makes it. The lab's fleet file then reaches the
// hosts as the user `deploy` through sudo, and names web-v2 of the same flake, so that the
// first deploy is a pinned one. A stand-in for an installation with the module: the lab has no
// nixpkgs, so the systems are examples/system.nix with the module's own text.

import { cp, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NEW_CLI } from "../cache/local-nix.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { PACKAGE_ROOT } from "../util/package-root.js";
import { runCommand } from "../util/run.js";
import type { LabLayout } from "./layout.js";

/** The first port of the pinned substituters: lab N's is PINNED_PORT_BASE + N. */
const PINNED_PORT_BASE = 20_000;
/**
 * What the lab's own systems need of Nix, whatever the machine's nix.conf says: they are plain
 * derivations with the machine's /bin/sh as builder (no sandbox, no build users), and nothing
 * is substituted (the lab reaches no address outside the machine).
 */
const LAB_BUILD_CONFIG = ["build-users-group =", "sandbox = false", "substituters ="].join("\n");
/** Seconds a build or a copy of the lab's systems may take. */
const NIX_TIMEOUT = 600;

/** Where a pinned lab's hosts substitute from: the deploy serves the lab's cache there. */
export function pinnedCacheAddress(layout: Pick<LabLayout, "gateway" | "number">): string {
  return `${layout.gateway}:${PINNED_PORT_BASE + layout.number}`;
}

/** The flake of the lab's pinned systems, in the lab's directory (`path:DIR#web-v2`). */
export function pinnedFlakeDir(layout: Pick<LabLayout, "dir">): string {
  return join(layout.dir, "pinned");
}

/**
 * Writes the flake of pinned example systems (web-v1, web-v2, web-broken) that trust
 * `cacheKey` and the lab's substituter. Pure flakes read nothing outside their directory, so
 * the example system, its service and the activation script are copied in beside it.
 */
export async function writePinnedFlake(layout: LabLayout, cacheKey: string): Promise<string> {
  const dir = pinnedFlakeDir(layout);
  await mkdir(dir, { recursive: true });
  await cp(join(PACKAGE_ROOT, "examples", "system.nix"), join(dir, "system.nix"));
  await cp(join(PACKAGE_ROOT, "examples", "web"), join(dir, "web"), { recursive: true });
  await cp(join(PACKAGE_ROOT, "dist", "host", "activate.sh"), join(dir, "activate.sh"));
  await cp(
    join(PACKAGE_ROOT, "packaging", "nixos", "nixship-activate.nix"),
    join(dir, "nixship-activate.nix"),
  );
  const substituter = `http://${pinnedCacheAddress(layout)}`;
  await writeFile(
    join(dir, "flake.nix"),
    `# The lab's pinned systems (nixship lab up --pinned): each installs nixship-activate, which
# trusts only the lab's cache key and its substituter, as nixosModules.host does.
{
  outputs = { self }:
    let
      pinned = {
        substituters = [ ${JSON.stringify(substituter)} ];
        trustedKeys = [ ${JSON.stringify(cacheKey)} ];
        script = ./activate.sh;
        text = import ./nixship-activate.nix;
      };
      mk = name: extra: import ./system.nix ({ system = "x86_64-linux"; inherit name pinned; version = name; } // extra);
    in {
      packages.x86_64-linux = {
        web-v1 = mk "web-v1" { };
        web-v2 = mk "web-v2" { };
        web-broken = mk "web-broken" { health = "fail"; };
      };
    };
}
`,
  );
  return dir;
}

/**
 * Installs `installable` on every host of the lab as an installer would: builds it here,
 * copies its closure into the host's store, signed by the lab's cache key, and makes it the
 * system profile's generation 1.
 * The host runs it from its next boot (the caller reboots it).
 */
export async function installOnHosts(layout: LabLayout, installable: string): Promise<StorePath> {
  const nix = (args: readonly string[], purpose: string) =>
    runCommand("nix", [...NEW_CLI, ...args], {
      purpose,
      env: { ...process.env, NIX_CONFIG: `${process.env.NIX_CONFIG ?? ""}\n${LAB_BUILD_CONFIG}` },
      errorCodes: { missing: "nix-missing", failed: "lab-install" },
      signal: AbortSignal.timeout(NIX_TIMEOUT * 1000),
    });
  const built = await nix(
    ["build", "--no-link", "--json", installable],
    `build ${installable} for the lab's hosts`,
  );
  const [entry] = JSON.parse(built.stdout) as { outputs?: { out?: string } }[];
  const path = parseStorePath(entry?.outputs?.out ?? "", `the output of ${installable}`).path;
  for (const host of layout.hosts) {
    // The host's /nix is its directory's nix/: a store of its own, rooted there.
    const store = `local?root=${host.dir}`;
    await nix(
      ["copy", "--no-check-sigs", "--to", store, path],
      `copy ${path} into ${host.name}'s store`,
    );
    // Signed there by the lab's cache key, as an installation from the lab's cache would have
    // them: the pinned host's checks (every path of a closure signed) hold from the start.
    await nix(
      ["store", "sign", "--store", store, "--key-file", layout.files.cacheKey, "--recursive", path],
      `sign ${path} in ${host.name}'s store`,
    );
    const profiles = join(host.dir, "nix", "var", "nix", "profiles");
    await mkdir(profiles, { recursive: true });
    await symlink(path, join(profiles, "system-1-link"));
    await symlink("system-1-link", join(profiles, "system"));
  }
  return path;
}
