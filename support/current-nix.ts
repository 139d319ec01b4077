// The current Nix (Debian trixie's 2.26, made by scripts/current-nix.sh) as the deployer's Nix:
// commands run in a private mount namespace whose /nix is a store of the test's own, with that
// Nix first on PATH, so the machine's /nix (Nix 2.8's database) is never opened by it.
import { access, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CliRun, NIXSHIP_BIN, type RunOptions, run } from "./cli.js";

export const CURRENT_NIX_DIR =
  process.env.NIXSHIP_CURRENT_NIX_DIR ?? "/var/lib/nixship/nix-current";
export const CURRENT_NIX_BIN = join(CURRENT_NIX_DIR, "bin");

/** Fails with the fix when scripts/current-nix.sh has not made the current Nix. */
export async function requireCurrentNix(): Promise<void> {
  await access(join(CURRENT_NIX_BIN, "nix")).catch(() => {
    throw new Error(
      `no current Nix in ${CURRENT_NIX_DIR}: run 'bash scripts/setup.sh --current-nix' (scripts/test.sh does)`,
    );
  });
}

/** An empty directory to be the current Nix's /nix (it makes its store and database there). */
export async function makeCurrentNixRoot(): Promise<string> {
  await requireCurrentNix();
  return mkdtemp(join(tmpdir(), "nixship-current-nix-"));
}

// The mount must have happened before anything runs: `set -e`, and /nix must then be the
// test's directory, or nothing runs at all.
const ENTER = [
  'mount --bind "$1" /nix',
  '[ "$(stat -c %d:%i /nix)" = "$(stat -c %d:%i "$1")" ] || { echo "/nix is not $1" >&2; exit 99; }',
  'PATH="$2:$PATH"',
  "export PATH",
  "shift 2",
  'exec "$@"',
].join("\n");

/**
 * The command line that runs `command` with the current Nix as the machine's Nix and `nixRoot`
 * as its /nix: [file, args].
 */
export function withCurrentNix(
  nixRoot: string,
  command: string,
  args: readonly string[],
): [string, string[]] {
  return [
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "--",
      "/bin/sh",
      "-ec",
      ENTER,
      "sh",
      nixRoot,
      CURRENT_NIX_BIN,
      command,
      ...args,
    ],
  ];
}

/** Runs `command` with the current Nix as the machine's Nix and `nixRoot` as its /nix. */
export function runWithCurrentNix(
  nixRoot: string,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliRun> {
  const [file, argv] = withCurrentNix(nixRoot, command, args);
  return run(file, argv, options);
}

/** `nixship ARGS` on a deployer whose Nix is the current one. */
export function nixshipWithCurrentNix(
  nixRoot: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliRun> {
  return runWithCurrentNix(nixRoot, process.execPath, [NIXSHIP_BIN, ...args], options);
}

/** Runs a command with the current Nix that must succeed; returns its stdout. */
export async function currentNixOk(
  nixRoot: string,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const r = await runWithCurrentNix(nixRoot, command, args, options);
  if (r.code !== 0) {
    throw new Error(`(current Nix) ${command} ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  }
  return r.stdout;
}
