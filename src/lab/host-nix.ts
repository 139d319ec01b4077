// Which Nix a lab's hosts run: the machine's own, or another one (`lab up --nix current|DIR`),
// shown to each host in place of the machine's nix executable, so that everything a deploy runs
// there (nix-store, nix-env, nix-collect-garbage: links to it) is that Nix.
import { access, constants } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseNixVersion, unsupportedNix } from "../cache/nix-version.js";
import { InputError } from "../errors.js";
import { runCommand } from "../util/run.js";
import { shellQuote } from "../util/shell-quote.js";

/** Where `bash scripts/current-nix.sh` puts the current Nix (Debian trixie's) by default. */
export const CURRENT_NIX_DIR = "/var/lib/nixship/nix-current";

export interface HostNix {
  /** A directory with a `nix` executable that runs on this machine. */
  readonly bin: string;
  /** What its `nix --version` printed. */
  readonly version: string;
}

/**
 * Reads `--nix`: `system` (undefined: the machine's own), `current` (the one
 * scripts/current-nix.sh makes, in $NIXSHIP_CURRENT_NIX_DIR or its default), or a directory
 * holding a `nix` executable. Checks that it runs and is a Nix nixship supports.
 */
export async function resolveHostNix(
  spec: string,
  env: NodeJS.ProcessEnv,
): Promise<HostNix | undefined> {
  if (spec === "system") return undefined;
  const bin =
    spec === "current"
      ? join(env.NIXSHIP_CURRENT_NIX_DIR ?? CURRENT_NIX_DIR, "bin")
      : resolve(spec);
  const nix = join(bin, "nix");
  const fix =
    spec === "current"
      ? "make it with 'bash scripts/current-nix.sh' (from nixship's source; Debian trixie's Nix in a root of its own)"
      : "give a directory holding a nix executable, or 'system' or 'current'";
  try {
    await access(nix, constants.X_OK);
  } catch {
    throw new InputError("lab-nix-missing", `--nix ${spec}: ${nix} is not an executable`, {
      hint: fix,
    });
  }
  const r = await runCommand(nix, ["--version"], {
    okCodes: [0, 1, 2, 126, 127],
    signal: AbortSignal.timeout(30_000),
  });
  const version = parseNixVersion(r.stdout);
  if (r.code !== 0 || version === undefined) {
    throw new InputError(
      "lab-nix-broken",
      `--nix ${spec}: '${nix} --version' ${r.code !== 0 ? `exited with ${r.code}` : "printed no version"}: ${(r.stderr || r.stdout).trim().slice(0, 200)}`,
      { hint: fix },
    );
  }
  const refused = unsupportedNix(version, r.stdout, `--nix ${spec}`);
  if (refused) throw refused;
  return { bin, version: version.text };
}

/**
 * Shell lines, run in a host's fresh mount namespace, that bind `nix` over the machine's nix
 * executable (the file its links resolve to), within that namespace only.
 */
export function hostNixBind(nix: HostNix): string[] {
  return [
    'machine_nix=$(readlink -f "$(command -v nix)")',
    `mount --bind ${shellQuote(join(nix.bin, "nix"))} "$machine_nix"`,
  ];
}
