// What a host whose SSH host key was refused is told, in every view: the deploy's failure, the
// plan's and status's row. A refused key is no outage: another machine may answer at the
// host's address, so the fix is a person's.

/** How to find out and fix a host key ssh refused. */
export const HOST_KEY_FIX =
  "it may be another machine, or the host was reinstalled: check its key out of band (its console, or the key it published: 'nixship fleet from-terraform --known-hosts'), then fix its line in the fleet's known_hosts";

/** ssh's words for a refused host key, with what it means and the fix. */
export function hostKeyRefused(sshSaid: string): string {
  const said = sshSaid.trim().replace(/\.$/, "");
  return `${said}: the host's key is not the one known for it (${HOST_KEY_FIX})`;
}
