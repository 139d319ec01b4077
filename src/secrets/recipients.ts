// Who may read a secret: the fleet's admins and the SSH host keys of the hosts its selector
// names. Pure; the caller collects the host keys (known_hosts, `hostKey`, published keys).

import { type AgeRecipient, parseRecipient } from "../age/age.js";
import { InputError } from "../errors.js";
import { closestFirst, listForHint } from "../fleet/closest.js";
import type { Fleet, FleetHost, SecretSpec } from "../fleet/fleet.js";
import { selectHosts } from "../fleet/select.js";

export interface SecretRecipients {
  /** Admins first, then hosts in fleet order: what the secret is encrypted to. */
  readonly recipients: readonly AgeRecipient[];
  /** The hosts that get the secret, in fleet order. */
  readonly hosts: readonly string[];
  /** Hosts that get the secret but have no known host key. */
  readonly hostsWithoutKey: readonly string[];
}

/**
 * The hosts some secret goes to, in fleet order: those whose keys the secrets commands look up
 * (and pin), and no other (a fleet of 10,000 hosts with secrets for ten looks up ten keys).
 */
export function secretHosts(fleet: Pick<Fleet, "hosts" | "secrets">): FleetHost[] {
  const names = new Set(
    (fleet.secrets?.entries ?? []).flatMap((spec) =>
      selectHosts(fleet, spec.hosts).map((h) => h.name),
    ),
  );
  return fleet.hosts.filter((h) => names.has(h.name));
}

/** The secret named `name` in the fleet; an error naming the fleet's secrets when none is. */
export function findSecret(fleet: Pick<Fleet, "secrets">, name: string): SecretSpec {
  const entries = fleet.secrets?.entries ?? [];
  const found = entries.find((e) => e.name === name);
  if (found !== undefined) return found;
  const names = entries.map((e) => e.name);
  throw new InputError("unknown-secret", `the fleet has no secret "${name}"`, {
    hint:
      names.length === 0
        ? `add it to the fleet first: in a fleet file, "secrets": {"admins": [...], "entries": {"${name}": {"hosts": "@web"}}}; in a fleet written in Nix, secrets = { admins = [ ... ]; entries.${JSON.stringify(name)}.hosts = "@web"; }; (docs/secrets.md)`
        : `the fleet's secrets: ${listForHint(closestFirst(name, names))}`,
  });
}

/** What `spec` must be encrypted to, given each host's key (`ssh-ed25519 …`) where known. */
export function secretRecipients(
  fleet: Pick<Fleet, "hosts" | "secrets">,
  spec: SecretSpec,
  hostKeys: ReadonlyMap<string, string>,
): SecretRecipients {
  const admins = (fleet.secrets?.admins ?? []).map((a, i) => parseRecipient(a, `admin ${i}`));
  const hosts = selectHosts(fleet, spec.hosts).map((h) => h.name);
  const keyed = hosts.flatMap((host) => {
    const key = hostKeys.get(host);
    return key === undefined ? [] : [parseRecipient(key, `the host key of ${host}`)];
  });
  return {
    recipients: [...admins, ...keyed],
    hosts,
    hostsWithoutKey: hosts.filter((h) => !hostKeys.has(h)),
  };
}

/** The error for hosts a secret cannot be encrypted to: it names them and the fix. */
export function hostsWithoutKeyError(secret: string, hosts: readonly string[]): InputError {
  return new InputError(
    "host-key-unknown",
    `secret "${secret}" goes to ${hosts.join(", ")}, whose SSH host key is not known, so it cannot be encrypted to ${hosts.length === 1 ? "it" : "them"}`,
    {
      hint: "ssh hosts: add the host's key to the fleet's known_hosts (ssh.knownHosts); ssm and agent hosts: set hosts.NAME.hostKey to its 'ssh-ed25519 …' key (/etc/ssh/ssh_host_ed25519_key.pub), or start its agent, which publishes it to the store, then run 'nixship secrets rekey'",
    },
  );
}
