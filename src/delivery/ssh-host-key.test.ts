// trustedHostKey: the host key ssh itself would check a host against, found through the real
// `ssh -G` and `ssh-keygen -F`: aliases, ports, HostKeyAlias, hashed entries, other key types;
// and the settings of many hosts read ahead by one shell.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  prefetchSshSettings,
  resolvedSettings,
  sshSettings,
  trustedHostKey,
} from "./ssh-host-key.js";
import type { SshTarget } from "./ssh-transport.js";

const dir = mkdtempSync(join(tmpdir(), "nixship-host-key-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIH2ocsX1Me8/O5NZWMH4XHmYORWs8Buly0VF+C10HLq7";
const KEY_B = "AAAAC3NzaC1lZDI1NTE5AAAAIHSpm6JBhF0CjmEJ0XDfDxyfZBIjv4kdL4Lq8vQ6A3nd";
const RSA = "AAAAB3NzaC1yc2EAAAADAQABAAABAQDd";

function target(destination: string, knownHosts: string, config?: string): SshTarget {
  return { name: destination, destination, user: "root", configFile: config, knownHosts };
}

describe("trustedHostKey", () => {
  it("finds the ed25519 key under the name and port ssh connects to", async () => {
    const known = join(dir, "known_hosts");
    writeFileSync(
      known,
      [
        `10.0.0.1 ssh-rsa ${RSA}`,
        `10.0.0.1 ssh-ed25519 ${KEY_A} web1`,
        `[10.0.0.2]:2222 ssh-ed25519 ${KEY_B}`,
        `@revoked 10.0.0.3 ssh-ed25519 ${KEY_A}`,
        "",
      ].join("\n"),
    );
    const config = join(dir, "ssh_config");
    writeFileSync(config, "Host web2\n  HostName 10.0.0.2\n  Port 2222\n");
    expect(await trustedHostKey(target("10.0.0.1", known))).toBe(`ssh-ed25519 ${KEY_A}`);
    expect(await trustedHostKey(target("web2", known, config))).toBe(`ssh-ed25519 ${KEY_B}`);
    // Port 22 of the same address is another entry, which is not there.
    expect(await trustedHostKey(target("10.0.0.2", known))).toBeUndefined();
    expect(await trustedHostKey(target("10.0.0.3", known))).toBeUndefined();
  });

  it("reads hashed entries, and follows HostKeyAlias", async () => {
    const known = join(dir, "hashed");
    writeFileSync(known, `10.0.0.9 ssh-ed25519 ${KEY_B}\nbastion-alias ssh-ed25519 ${KEY_A}\n`);
    execFileSync("ssh-keygen", ["-H", "-f", known], { stdio: "ignore" });
    const config = join(dir, "alias_config");
    writeFileSync(config, "Host db1\n  HostName 10.0.0.7\n  HostKeyAlias bastion-alias\n");
    expect(await trustedHostKey(target("10.0.0.9", known))).toBe(`ssh-ed25519 ${KEY_B}`);
    expect(await trustedHostKey(target("db1", known, config))).toBe(`ssh-ed25519 ${KEY_A}`);
  });

  it("reads many hosts' settings with one shell, each as its own ssh -G would", async () => {
    const config = join(dir, "many_config");
    const names = Array.from({ length: 150 }, (_, i) => `m${i}`);
    writeFileSync(
      config,
      names
        .map((n, i) => `Host ${n}\n  HostName 192.0.2.${i % 250}\n  Port ${2000 + i}\n`)
        .join(""),
    );
    const targets = names.map((n) => target(n, join(dir, "none"), config));
    // A target with a config that ssh refuses reads as its own ssh -G does: no settings.
    const bad = join(dir, "bad_config");
    writeFileSync(bad, "NoSuchOption yes\n");
    const refused = target("m0", join(dir, "none"), bad);
    const drop = prefetchSshSettings([...targets, refused]);
    const read = await Promise.all(targets.map((t) => sshSettings(t)));
    read.forEach((settings, i) => {
      expect(settings.get("hostname")).toBe(`192.0.2.${i % 250}`);
      expect(settings.get("port")).toBe(String(2000 + i));
    });
    expect(await sshSettings(refused)).toEqual(await resolvedSettings(["-F", bad], "m0", "x"));
    drop();
    // Taken once: a config changed since is read again.
    writeFileSync(config, "Host m1\n  HostName 198.51.100.1\n");
    expect((await sshSettings(targets[1] as SshTarget)).get("hostname")).toBe("198.51.100.1");
  });

  it("reads ssh's effective settings", async () => {
    const config = join(dir, "settings_config");
    writeFileSync(config, "Host web3\n  HostName 192.0.2.7\n  Port 2200\n");
    const settings = await sshSettings(target("web3", join(dir, "none"), config));
    expect(settings.get("hostname")).toBe("192.0.2.7");
    expect(settings.get("port")).toBe("2200");
  });
});
