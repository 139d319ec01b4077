// Each host's SSH host ed25519 key, which its secrets are encrypted to: for ssh hosts the key
// the deployer already checks it against (known_hosts, through ssh's own lookup); for ssm and
// agent hosts the fleet's `hostKey`, else the key the host's agent published to the store,
// judged against the pins beside the fleet file (secrets/host-key-pins.ts).
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { REPLACE_HOST_KEYS_FLAG } from "../fleet/from-terraform.js";
import { HostKeyChangedError, type HostKeyConflict, keyFingerprint } from "../fleet/known-hosts.js";
import {
  type HostKeyPins,
  judgePublished,
  pinsPath,
  readPins,
  writePins,
} from "../secrets/host-key-pins.js";
import { readPublishedHostKey } from "../status/host-key-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import { sshTarget } from "./ssh.js";
import { prefetchSshSettings, trustedHostKey } from "./ssh-host-key.js";

const CONCURRENCY = 8;

export interface HostKeys {
  /** Host name → `ssh-ed25519 BASE64`, for the hosts whose key is known (a pin before the store). */
  readonly keys: ReadonlyMap<string, string>;
  /** Hosts whose published key differs from their pin. */
  readonly conflicts: readonly HostKeyConflict[];
  /** Published keys no pin names yet. */
  readonly unpinned: ReadonlyMap<string, string>;
  /** The published keys of the hosts in `conflicts`. */
  readonly changed: ReadonlyMap<string, string>;
}

/** Each host's key; `pins`: the published keys pinned in the fleet's directory `fleetDir`. */
export async function collectHostKeys(
  fleet: Pick<Fleet, "ssh" | "cache">,
  hosts: readonly FleetHost[],
  pinned: { readonly pins: HostKeyPins; readonly fleetDir: string },
): Promise<HostKeys> {
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
    const fromStore = (h: FleetHost) => h.delivery !== "ssh" && h.hostKey === undefined;
    const found = await mapLimit(hosts, CONCURRENCY, async (host) => {
      if (host.hostKey !== undefined) return host.hostKey;
      if (host.delivery === "ssh") return trustedHostKey(sshTarget(host, fleet.ssh));
      return store === undefined ? undefined : readPublishedHostKey(store, host.name);
    });
    const keys = new Map<string, string>();
    const published = new Map<string, string | undefined>();
    hosts.forEach((host, i) => {
      const key = found[i];
      if (fromStore(host)) published.set(host.name, key);
      else if (key !== undefined) keys.set(host.name, key);
    });
    const judged = judgePublished(published, pinned.pins, pinsPath(pinned.fleetDir));
    for (const [host, key] of judged.keys) keys.set(host, key);
    return { ...judged, keys };
  } finally {
    drop();
    await store?.close();
  }
}

/** The hosts' keys, the published ones judged against their pins, and how to pin those used. */
export interface PinnedHostKeys {
  readonly keys: ReadonlyMap<string, string>;
  /**
   * Pins the published keys `keys` holds that no pin named (or, replacing, named otherwise),
   * and says which, with their fingerprints: a first sight is trusted as it is, so the operator
   * is shown what to check out of band.
   */
  readonly pin: () => Promise<readonly NewPin[]>;
}

/** A host key pinned now: the host and its key's SHA256 fingerprint. */
export interface NewPin {
  readonly host: string;
  readonly fingerprint: string;
  /** Whether it replaced another pin (--replace-host-keys). */
  readonly replaced: boolean;
}

/**
 * Each host's key, its pin before what it published: a published key that differs from its pin
 * is refused (the host's secrets stay encrypted to the pin) unless `replace`, which takes it.
 * `fix`: what the refusal says to run (default: again with --replace-host-keys).
 */
export async function pinnedHostKeys(
  fleet: Pick<Fleet, "ssh" | "cache">,
  hosts: readonly FleetHost[],
  fleetDir: string,
  how: { readonly replace?: boolean; readonly fix?: string } = {},
): Promise<PinnedHostKeys> {
  const pins = await readPins(fleetDir);
  const found = await collectHostKeys(fleet, hosts, { pins, fleetDir });
  if (found.conflicts.length > 0 && how.replace !== true) {
    throw new HostKeyChangedError(found.conflicts, REPLACE_HOST_KEYS_FLAG, how.fix);
  }
  const changes = new Map([...found.unpinned, ...found.changed]);
  return {
    keys: new Map([...found.keys, ...found.changed]),
    pin: async () => {
      if (changes.size > 0) await writePins(fleetDir, changes);
      return [...changes].map(([host, key]) => ({
        host,
        fingerprint: keyFingerprint(key),
        replaced: found.changed.has(host),
      }));
    },
  };
}

/** The hosts' keys for a deploy, which pins nothing: a changed published key is for rekey. */
export async function deployHostKeys(
  fleet: Pick<Fleet, "ssh" | "cache">,
  hosts: readonly FleetHost[],
  fleetDir: string,
): Promise<ReadonlyMap<string, string>> {
  const fix = `run 'nixship secrets rekey ${REPLACE_HOST_KEYS_FLAG}', which re-encrypts their secrets to the new keys and pins them`;
  return (await pinnedHostKeys(fleet, hosts, fleetDir, { fix })).keys;
}

/**
 * Each agent host's key as its reports are judged by (status/report-signature.ts): the fleet's
 * `hostKey`, else its pin. Never a published key no pin names: whoever can write the store could
 * have published it.
 */
export function agentReportKeys(
  hosts: readonly FleetHost[],
  pins: HostKeyPins,
): Map<string, string> {
  const keys = new Map<string, string>();
  for (const host of hosts) {
    if (host.delivery !== "agent") continue;
    const key = host.hostKey ?? pins.get(host.name);
    if (key !== undefined) keys.set(host.name, key);
  }
  return keys;
}
