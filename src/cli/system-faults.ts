// Faults of the machine or the network that reach the top as Node's system errors (EACCES,
// EADDRNOTAVAIL, ECONNREFUSED, …): the user's to fix, not a bug in nixship, so they get an
// error code and a hint about the cause.
import { type NixshipError, OperationError } from "../errors.js";

const HINTS: Readonly<Record<string, string>> = {
  EACCES:
    "permission denied: run it as a user who may (the lab needs root), or fix the permissions of the file or directory named",
  EPERM: "operation not permitted: run it as a user who may (the lab needs root)",
  EADDRNOTAVAIL:
    "no network interface of this machine has that address: check --listen or --serve-cache (a lab's bridge address exists only while the lab is up: 'nixship lab address --name NAME' prints it)",
  EADDRINUSE:
    "another process already listens on that address: pick another port, or port 0 for any free one",
  ECONNREFUSED: "nothing listens there: is the server running, and are the address and port right?",
  ECONNRESET: "the other side closed the connection: try again, and check the server's logs",
  ETIMEDOUT: "no answer in time: check the address, the network and any firewall",
  EHOSTUNREACH: "no route to that host: check the address and the network",
  ENETUNREACH: "no route to that network: check the address and the network",
  ENOTFOUND: "the host name does not resolve: check its spelling and DNS",
  ENOENT: "a file or directory it needs does not exist: check the path named",
  ENOTDIR: "a path named as a directory is a file: check the path named",
  EISDIR: "a path named as a file is a directory: check the path named",
  ENOSPC: "no space left on the device: free some, or point the command elsewhere",
  ENAMETOOLONG:
    "a path is longer than this file system allows: restore or write it into a directory with a shorter path",
  EROFS: "the file system is read-only: point the command at a writable place",
  EMFILE: "too many open files: raise the limit (ulimit -n) or lower --jobs",
};

/** A system error as a NixshipError with its hint, or undefined for anything else. */
export function systemFault(err: unknown): NixshipError | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code !== "string") return undefined;
  const hint = HINTS[code];
  if (hint === undefined) return undefined;
  return new OperationError(`system-${code.toLowerCase()}`, err.message, { hint, cause: err });
}
