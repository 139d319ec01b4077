// The address a deploy serves the fleet's cache on (`--serve-cache`), checked before anything
// is built or any host changes: on a loopback address only this machine reaches it, and every
// other host would fail in realise, after Nix's retries, to substitute its system; the
// unspecified address (0.0.0.0, ::) is where a server listens, not an address to fetch from.
import { InputError } from "../errors.js";
import type { FleetHost } from "../fleet/fleet.js";
import {
  isLoopback,
  isUnspecified,
  type ListenAddress,
  listenUrl,
} from "../util/listen-address.js";

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

/**
 * Refuses an unspecified `--serve-cache` (the URL the hosts are given would be
 * http://0.0.0.0:…), and a loopback one when a selected host substitutes from elsewhere.
 */
export function checkServedAddress(
  served: ListenAddress | undefined,
  hosts: readonly FleetHost[],
): void {
  if (served === undefined) return;
  const given = `${served.host.includes(":") ? `[${served.host}]` : served.host}:${served.port}`;
  if (isUnspecified(served.host)) {
    throw new InputError(
      "serve-cache-unspecified",
      `--serve-cache ${given} is the unspecified address: the cache would listen on every interface, but the URL the hosts are told to fetch from (${listenUrl(served.host, served.port).replace(/:0$/, ":…")}) names no machine`,
      { hint: SERVE_CACHE_FIX },
    );
  }
  if (!isLoopback(served.host)) return;
  const far = hosts.filter(remote).map((h) => h.name);
  if (far.length === 0) return;
  const shown =
    far.length > 3 ? `${far.slice(0, 3).join(", ")} and ${far.length - 3} more` : far.join(", ");
  throw new InputError(
    "serve-cache-loopback",
    `--serve-cache ${given} is a loopback address, which only this machine reaches: ${shown} would fail to substitute ${far.length === 1 ? "its system" : "their systems"} from it`,
    { hint: SERVE_CACHE_FIX },
  );
}
