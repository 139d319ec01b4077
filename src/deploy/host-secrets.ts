// Each deployed host's secrets: the ciphertexts of the secrets the fleet gives it, checked to
// be encrypted to its host key, as one bundle for activate.sh. Ciphertexts only: the deployer
// never decrypts anything to deploy.

import { parseRecipient, readAgeHeader } from "../age/age.js";
import { InputError } from "../errors.js";
import type { Fleet, FleetHost } from "../fleet/fleet.js";
import { selectHosts } from "../fleet/select.js";
import type { HostSecrets } from "../host/activation-session.js";
import {
  type BundledSecret,
  secretsBundle,
  secretsManifestDigest,
} from "../host/secrets-bundle.js";
import { hostsWithoutKeyError } from "../secrets/recipients.js";
import { readCiphertext, requireOwnFile } from "../secrets/secret-file.js";
import { secretsCommand } from "../secrets/secrets-command.js";

/**
 * The secrets of each of `hosts` (by name); empty when the fleet has no secrets section, so
 * that activate.sh leaves hosts' secrets alone. A host that gets no secret gets an empty
 * bundle, which removes the secrets it had.
 */
export async function hostSecrets(
  fleet: Pick<Fleet, "hosts" | "secrets">,
  hosts: readonly FleetHost[],
  hostKeys: ReadonlyMap<string, string>,
  fleetArg?: string,
): Promise<Map<string, HostSecrets>> {
  const byHost = new Map<string, BundledSecret[]>();
  if (fleet.secrets === undefined) return new Map();
  for (const host of hosts) byHost.set(host.name, []);
  for (const spec of fleet.secrets.entries) {
    const receivers = selectHosts(fleet, spec.hosts).filter((h) => byHost.has(h.name));
    if (receivers.length === 0) continue;
    // A secret is encrypted to one host key; the instances a tag target matches each have
    // their own (made at first boot), and those that cannot decrypt it would leave the host
    // half on its new system.
    const targeted = receivers.filter((h) => h.delivery === "ssm" && h.instanceId === undefined);
    if (targeted.length > 0) {
      const names = targeted.map((h) => h.name).join(", ");
      throw new InputError(
        "secret-for-tag-target",
        `secret "${spec.name}" reaches ${names}, which ${targeted.length === 1 ? "stands" : "stand"} for every instance ${targeted.length === 1 ? "its" : "their"} SSM targets match: a secret is encrypted to one host key, and each instance has its own`,
        {
          hint: `name each instance as a host of its own (instanceId, and its hostKey), or leave ${names} out of secrets.entries.${spec.name}.hosts`,
        },
      );
    }
    const ciphertext = await readCiphertext(spec.file);
    if (ciphertext === undefined) {
      throw new InputError(
        "secret-file-missing",
        `secret "${spec.name}" has no file ${spec.file}`,
        {
          hint: `create it with: ${secretsCommand(`set ${spec.name}`, fleetArg)}`,
        },
      );
    }
    const header = await readAgeHeader(ciphertext, spec.file);
    // The host refuses it too (activate.sh): found here, before any host changes.
    requireOwnFile(
      spec.name,
      spec.file,
      header.secretName,
      secretsCommand(`set ${spec.name}`, fleetArg),
    );
    const tags = new Set(header.sshTags);
    const keyless = receivers.filter((h) => !hostKeys.has(h.name)).map((h) => h.name);
    if (keyless.length > 0) throw hostsWithoutKeyError(spec.name, keyless);
    const unreadable = receivers.filter((h) => {
      const key = parseRecipient(hostKeys.get(h.name) as string, `the host key of ${h.name}`);
      return key.sshTag === undefined || !tags.has(key.sshTag);
    });
    if (unreadable.length > 0) {
      throw new InputError(
        "secret-not-for-host",
        `secret "${spec.name}" (${spec.file}) is not encrypted to the host key of ${unreadable.map((h) => h.name).join(", ")}, so ${unreadable.length === 1 ? "that host" : "those hosts"} could not decrypt it`,
        { hint: "run: nixship secrets rekey" },
      );
    }
    for (const host of receivers) {
      byHost.get(host.name)?.push({
        name: spec.name,
        owner: spec.owner,
        group: spec.group,
        mode: spec.mode,
        path: spec.path,
        ciphertext,
      });
    }
  }
  const result = new Map<string, HostSecrets>();
  for (const [host, secrets] of byHost) {
    const hostKey = secrets.length > 0 ? hostKeys.get(host) : undefined;
    result.set(host, {
      bundle: secretsBundle(secrets),
      digest: secretsManifestDigest(secrets),
      age: fleet.secrets.age,
      ...(hostKey === undefined ? {} : { hostKey }),
    });
  }
  return result;
}
