// Which Nix a `nix --version` line names, and what that Nix's command line accepts: the one
// place that knows how Nix's syntax changed between the versions nixship is tested with.
import { OperationError } from "../errors.js";

export interface NixVersion {
  /** The line Nix printed ("nix (Nix) 2.26.3", "nix (Lix, like Nix) 2.91.1"). */
  readonly text: string;
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

/** The oldest Nix nixship is tested with (Debian bookworm's nix-bin), and the newest. */
export const OLDEST_TESTED_NIX = "2.8.0";
export const NEWEST_TESTED_NIX = "2.26.3";

/**
 * Reads the version from what `nix --version` (or `nix-store --version`) printed: the last
 * dotted number on its first line, so that forks naming themselves ("Lix, like Nix",
 * "Determinate Nix 3.6.2") are read by the Nix version they carry. Undefined when none.
 */
export function parseNixVersion(output: string): NixVersion | undefined {
  const line = (output.split("\n")[0] ?? "").trim().slice(0, 200);
  const numbers = [...line.matchAll(/(\d+)\.(\d+)(?:\.(\d+))?/g)];
  const last = numbers.at(-1);
  if (last === undefined) return undefined;
  return {
    text: line,
    major: Number(last[1]),
    minor: Number(last[2]),
    patch: Number(last[3] ?? 0),
  };
}

function compare(a: Pick<NixVersion, "major" | "minor" | "patch">, b: string): number {
  const [major = 0, minor = 0, patch = 0] = b.split(".").map(Number);
  return a.major - major || a.minor - minor || a.patch - patch;
}

/** Whether `version` is at least `oldest` ("2.14"). */
export function atLeast(version: NixVersion, oldest: string): boolean {
  return compare(version, oldest) >= 0;
}

/** Whether `version` is newer than the newest Nix nixship is tested with. */
export function newerThanTested(version: NixVersion): boolean {
  return compare(version, NEWEST_TESTED_NIX) > 0;
}

/**
 * Why a Nix is not supported, or undefined: older than the oldest one tested. A line with no
 * version at all is refused too, since nothing can be chosen for it.
 */
export function unsupportedNix(version: NixVersion | undefined, said: string, where: string) {
  if (version === undefined) {
    return new OperationError(
      "nix-version-unknown",
      `cannot tell the version of ${where}'s Nix from what it printed: '${said.trim().slice(0, 120)}'`,
      { hint: `nixship runs with Nix ${OLDEST_TESTED_NIX} to ${NEWEST_TESTED_NIX}` },
    );
  }
  if (atLeast(version, OLDEST_TESTED_NIX)) return undefined;
  return new OperationError(
    "nix-too-old",
    `${where}'s Nix is ${version.major}.${version.minor}.${version.patch} ('${version.text}'), older than ${OLDEST_TESTED_NIX}, the oldest Nix nixship is tested with`,
    { hint: `upgrade Nix to ${OLDEST_TESTED_NIX} or later (tested up to ${NEWEST_TESTED_NIX})` },
  );
}

/**
 * The installable that builds every output of a store derivation. Since Nix 2.14 (NixOS/nix
 * #7600) a bare `.drv` path means the derivation file itself, and `DRV^*` its outputs; Nix
 * before 2.13 knows no `^` and builds the outputs of a bare path.
 */
export function derivationOutputs(drv: string, version: NixVersion): string {
  return atLeast(version, "2.14") ? `${drv}^*` : drv;
}
