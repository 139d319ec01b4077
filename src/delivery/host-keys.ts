// Each host's SSH host ed25519 key, which its secrets are encrypted to: for ssh hosts the key
// the deployer already checks it against (known_hosts, through ssh's own lookup); for ssm and
// agent hosts the fleet's `hostKey`, else the key the host's agent published to the store.
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { readPublishedHostKey } from "../status/host-key-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import { sshTarget } from "./ssh.js";
import { prefetchSshSettings, trustedHostKey } from "./ssh-host-key.js";

const CONCURRENCY = 8;

/** Host name → `ssh-ed25519 BASE64`, for the hosts whose key is known. */
export async function collectHostKeys(
  fleet: Pick<Fleet, "ssh" | "cache">,
  hosts: readonly FleetHost[],
): Promise<Map<string, string>> {
  const published = hosts.some((h) => h.delivery !== "ssh" && h.hostKey === undefined);
  const store: ObjectStore | undefined =
    published && fleet.cache !== undefined ? await openStore(fleet.cache.url) : undefined;
  // The ssh hosts' settings (where their keys are looked up) are read by one shell.
  const drop = prefetchSshSettings(
    hosts.flatMap((h) =>
      h.delivery === "ssh" && h.hostKey === undefined ? [sshTarget(h, fleet.ssh)] : [],
    ),
  );
  try {
    const found = await mapLimit(hosts, CONCURRENCY, async (host) => {
      if (host.hostKey !== undefined) return host.hostKey;
      if (host.delivery === "ssh") return trustedHostKey(sshTarget(host, fleet.ssh));
      return store === undefined ? undefined : readPublishedHostKey(store, host.name);
    });
    const keys = new Map<string, string>();
    hosts.forEach((host, i) => {
      const key = found[i];
      if (key !== undefined) keys.set(host.name, key);
    });
    return keys;
  } finally {
    drop();
    await store?.close();
  }
}
