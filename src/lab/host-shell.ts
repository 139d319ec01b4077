// The sh a lab host runs: the machine's (`lab up --sh system`, the default; Debian's is dash),
// or bash (`--sh bash`), as NixOS's /bin/sh is. With bash, a script piped to `sh -s` is read as
// a NixOS host reads it (one byte at a time from a pipe), and the hosts' shell costs what it
// costs there.
import { UsageError } from "../errors.js";

export const HOST_SHELLS = ["system", "bash"] as const;
export type HostShell = (typeof HOST_SHELLS)[number];

/** `--sh`'s value, checked. */
export function parseHostShell(value: string): HostShell {
  const shell = HOST_SHELLS.find((s) => s === value);
  if (shell === undefined) {
    throw new UsageError(
      `lab up: --sh takes ${HOST_SHELLS.join(" or ")} (what the hosts' sh is); got '${value}'`,
    );
  }
  return shell;
}

/**
 * Shell lines, run in a host's fresh mount namespace, that make `shell` what /bin/sh (and `sh`
 * on PATH, which leads to the same file) runs, within that namespace only: bash bound over the
 * file /bin/sh leads to. Invoked as sh, bash keeps to POSIX mode, as on NixOS.
 */
export function hostShellBind(shell: HostShell): string[] {
  if (shell === "system") return [];
  return [
    "machine_sh=$(readlink -f /bin/sh)",
    'mount --bind "$(readlink -f /bin/bash)" "$machine_sh"',
  ];
}
