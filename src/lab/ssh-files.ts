// The text of the lab's SSH files: each host's sshd_config and nix.conf, and the deployer's
// ssh_config and known_hosts. Pure; lab-up.ts writes them.
import { join } from "node:path";
import type { LabHostLayout, LabLayout } from "./layout.js";

/** The lab ssh_config's control sockets: `DIR/cm-%C`. */
export const LAB_CONTROL_PREFIX = "cm-";

/** Where the host's sshd files are copied inside the host (its /run is its own tmpfs). */
export const HOST_SSHD_DIR = "/run/nixship-lab";

/** sshd on port 22 of the host's own address, keys only, root allowed (it is the deploy user). */
export function sshdConfig(host: LabHostLayout): string {
  return `${[
    `ListenAddress ${host.address}:22`,
    `HostKey ${HOST_SSHD_DIR}/ssh_host_ed25519_key`,
    `AuthorizedKeysFile ${HOST_SSHD_DIR}/authorized_keys`,
    "PidFile /run/sshd.pid",
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    // The lab's directory is root's, but may sit under a group-writable parent (e.g. /tmp).
    "StrictModes no",
    "PrintMotd no",
    "MaxStartups 200:30:400",
    "MaxSessions 64",
    "ClientAliveInterval 5",
    "ClientAliveCountMax 3",
  ].join("\n")}\n`;
}

/**
 * The host's own Nix settings (bind-mounted over /etc/nix): no build users or sandbox (as on
 * the deployer), nothing substituted unless a deploy names a cache, and signatures required.
 */
export function hostNixConf(): string {
  return `${[
    "build-users-group =",
    "sandbox = false",
    "substituters =",
    "require-sigs = true",
    "experimental-features = nix-command flakes",
    "narinfo-cache-positive-ttl = 0",
    "narinfo-cache-negative-ttl = 0",
  ].join("\n")}\n`;
}

/** One Host block per lab host: strict host key checking, one reused connection per host. */
export function clientSshConfig(lab: LabLayout): string {
  const blocks = lab.hosts.map((host) =>
    [
      `Host ${host.name}`,
      `  HostName ${host.address}`,
      "  User root",
      `  IdentityFile ${lab.files.clientKey}`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${lab.files.knownHosts}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  BatchMode yes",
      "  ConnectTimeout 5",
      "  ServerAliveInterval 5",
      "  ServerAliveCountMax 3",
      "  ControlMaster auto",
      `  ControlPath ${join(lab.dir, `${LAB_CONTROL_PREFIX}%C`)}`,
      "  ControlPersist 60",
    ].join("\n"),
  );
  return `# Written by 'nixship lab up' for lab '${lab.name}'.\n${blocks.join("\n\n")}\n`;
}

/** known_hosts lines naming each host by alias and by address. */
export function knownHosts(lab: LabLayout, hostKeys: ReadonlyMap<string, string>): string {
  return lab.hosts
    .map((host) => {
      const key = hostKeys.get(host.name);
      if (key === undefined) throw new Error(`no host key for ${host.name}`);
      return `${host.name},${host.address} ${key}\n`;
    })
    .join("");
}
