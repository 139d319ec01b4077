// Putting a lab host back between two measured runs: on the system it ran before, with every
// other generation and automatic root gone, so that the paths a run brought can be deleted and
// the next run fetches them anew (bench/host-pieces.ts, bench/delta-link.ts).

/** The system profile the host's script switches. */
export const SYSTEM_PROFILE = "/nix/var/nix/profiles/system";

/**
 * The shell command that sets `system` as the host's only generation, switches to it and drops
 * the automatic GC roots: after it, nothing holds what later generations brought.
 */
export function backToSystemCommand(system: string): string {
  return (
    `nix-env -p ${SYSTEM_PROFILE} --set ${system} >/dev/null && ` +
    `${system}/bin/switch-to-configuration switch >/dev/null && ` +
    `nix-env -p ${SYSTEM_PROFILE} --delete-generations old >/dev/null && ` +
    "rm -f /nix/var/nix/gcroots/auto/*"
  );
}
