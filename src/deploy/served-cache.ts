// The address a deploy serves the fleet's cache on (`--serve-cache`), checked before anything
// is built or any host changes: on a loopback address only this machine reaches it, and every
// other host would fail in realise, after Nix's retries, to substitute its system.
import { InputError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import { isLoopback, type ListenAddress } from "../util/listen-address.js";

/** How to serve the cache where the hosts reach it: doctor's fix and the deploy's. */
export const SERVE_CACHE_FIX =
  'serve the cache on an address of this machine the hosts can reach (a lab\'s: --serve-cache "$(nixship lab address --name NAME):0"), and let them through to its port';

/**
 * Whether a host substitutes from the served cache from another machine: an ssh host whose
 * destination is not this machine's loopback, and every SSM host (agents read the store).
 */
function remote(host: FleetHost): boolean {
  if (host.delivery === "agent") return false;
  if (host.delivery === "ssm") return true;
  const destination = host.address ?? host.sshHost;
  return destination === undefined || !isLoopback(destination);
}

/** Refuses a loopback `--serve-cache` when a selected host substitutes from elsewhere. */
export function checkServedAddress(
  served: ListenAddress | undefined,
  hosts: readonly FleetHost[],
): void {
  if (served === undefined || !isLoopback(served.host)) return;
  const far = hosts.filter(remote).map((h) => h.name);
  if (far.length === 0) return;
  const shown =
    far.length > 3 ? `${far.slice(0, 3).join(", ")} and ${far.length - 3} more` : far.join(", ");
  throw new InputError(
    "serve-cache-loopback",
    `--serve-cache ${served.host.includes(":") ? `[${served.host}]` : served.host}:${served.port} is a loopback address, which only this machine reaches: ${shown} would fail to substitute ${far.length === 1 ? "its system" : "their systems"} from it`,
    { hint: SERVE_CACHE_FIX },
  );
}
