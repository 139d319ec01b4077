// What OpenSSH's own words say of a failed connection, where a caller must tell a refused host
// key (another machine answers, or a key nobody recorded) from an outage: one reading for the
// deploy's survey and the build's remote builders.

/** Whether ssh refused the host's key: unknown to known_hosts, or changed since recorded. */
export function refusedHostKey(said: string): boolean {
  return /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known|host key for .* has changed/i.test(
    said,
  );
}
