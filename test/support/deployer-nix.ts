// The deployer's Nix as a parameter: the machine's (Debian's 2.8) or the current one (trixie's
// 2.26, in a /nix of the test's own), so that a case written once runs on each.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePathInfoJson } from "../../src/cache/local-nix.js";
import { type CliRun, nixship, type RunOptions, run } from "../../support/cli.js";
import {
  makeCurrentNixRoot,
  nixshipWithCurrentNix,
  runWithCurrentNix,
} from "../../support/current-nix.js";
import { FIXTURE_EXPRESSION } from "./fixture-closure.js";

export interface DeployerNix {
  /** "2.8" or "2.26": what a test's name says. */
  readonly version: string;
  /** Runs `command` with this Nix as the machine's Nix (its nix, nix-store, ... on PATH). */
  readonly run: (command: string, args: readonly string[], options?: RunOptions) => Promise<CliRun>;
  /** nixship on a deployer whose Nix this is. */
  readonly nixship: (args: readonly string[], options?: RunOptions) => Promise<CliRun>;
  /** Removes what this Nix was given of its own (the current Nix's /nix). */
  readonly close: () => Promise<void>;
}

/** Runs a command with `nix` that must succeed; returns its stdout. */
export async function nixOk(
  nix: DeployerNix,
  command: string,
  args: readonly string[],
): Promise<string> {
  const r = await nix.run(command, args);
  if (r.code !== 0) {
    throw new Error(
      `(Nix ${nix.version}) ${command} ${args.join(" ")} exited ${r.code}:\n${r.stderr}`,
    );
  }
  return r.stdout;
}

/** The machine's Nix, Debian's 2.8, on the machine's /nix. */
export function machineNix(): DeployerNix {
  return {
    version: "2.8",
    run: (command, args, options) => run(command, args, options),
    nixship: (args, options) => nixship(args, options),
    close: async () => {},
  };
}

/** The current Nix, trixie's 2.26, on an empty /nix of its own. */
export async function currentNix(): Promise<DeployerNix> {
  const nixRoot = await makeCurrentNixRoot();
  return {
    version: "2.26",
    run: (command, args, options) => runWithCurrentNix(nixRoot, command, args, options),
    nixship: (args, options) => nixshipWithCurrentNix(nixRoot, args, options),
    close: () => rm(nixRoot, { recursive: true, force: true }),
  };
}

/** The fixture closure (fixture-closure.ts) built by `nix` in its store; its top path. */
export async function buildFixtureWith(nix: DeployerNix): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-fixture-"));
  try {
    const file = join(dir, "fixture.nix");
    await writeFile(file, FIXTURE_EXPRESSION);
    return (await nixOk(nix, "nix-build", ["--no-out-link", file])).trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * What `nix` records of a closure in its store (or in `store`), whichever shape its
 * `path-info --json` has: a line per path of its NarHash (nix32), NarSize and references.
 */
export async function closureLines(
  nix: DeployerNix,
  path: string,
  store?: string,
): Promise<Map<string, string>> {
  const args = ["path-info", "--json", "--recursive", ...(store ? ["--store", store] : []), path];
  return new Map(
    parsePathInfoJson(await nixOk(nix, "nix", args)).map((p) => [
      p.path,
      `${p.narHash.format("nix32")} ${p.narSize} ${[...p.references].sort().join(",")}`,
    ]),
  );
}
